package recipe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// YAML is the recipe fully resolved: every key, in schema order, defaults
// filled in. Parse reads it back to an equal Recipe. It carries no comments,
// so it depends only on the values (Hash is taken over it).
func (r Recipe) YAML() ([]byte, error) { return r.encode(false) }

// AnnotatedYAML is YAML with a comment after each value saying where it came
// from: "recipe.yaml:12", "--set optim.lr=3e-4", or "default". It is what
// `torus recipe check` prints; Parse reads it back like YAML.
func (r Recipe) AnnotatedYAML() ([]byte, error) { return r.encode(true) }

// Hash is the sha256 of YAML, in hex: two recipes with the same values have
// the same hash, wherever the values came from.
func (r Recipe) Hash() string {
	b, err := r.YAML()
	if err != nil {
		// Not reached: the nodes are built from the schema's kinds, and
		// strings that are not UTF-8 are written as !!binary. Fall back to
		// the Go syntax of the values, which is deterministic too.
		r.origins = nil
		b = fmt.Appendf(nil, "%#v", r)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (r Recipe) encode(annotate bool) ([]byte, error) {
	e := encoder{r: r, annotate: annotate}
	root := e.node(reflect.ValueOf(r), "")
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("recipe: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("recipe: encode: %w", err)
	}
	return buf.Bytes(), nil
}

type encoder struct {
	r        Recipe
	annotate bool
}

// comment is where key's value came from, for AnnotatedYAML.
func (e encoder) comment(key string) string {
	if !e.annotate {
		return ""
	}
	if o, ok := e.r.origins[key]; ok {
		return o.String()
	}
	return "default"
}

// node is v, the value of key, as a YAML node.
func (e encoder) node(v reflect.Value, key string) *yaml.Node {
	switch v.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		t := v.Type()
		for i := range t.NumField() {
			k, ok := yamlKey(t.Field(i))
			if !ok {
				continue
			}
			child := join(key, k)
			if child == "lora" && v.Field(i).FieldByName("Rank").Int() == 0 {
				// No adapters: the section is left out, since writing it (even
				// rank: 0) means asking for adapters.
				continue
			}
			kn := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}
			vn := e.node(v.Field(i), child)
			if vn.Kind == yaml.ScalarNode || vn.Style&yaml.FlowStyle != 0 {
				vn.LineComment = e.comment(child)
			} else if vn.Kind == yaml.SequenceNode {
				kn.LineComment = e.comment(child) // "sources: # recipe.yaml:5"
			}
			n.Content = append(n.Content, kn, vn)
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v.Len() == 0 || v.Type().Elem().Kind() != reflect.Struct {
			n.Style = yaml.FlowStyle // include: ["*.go"], sources: []
		}
		for i := range v.Len() {
			n.Content = append(n.Content, e.node(v.Index(i), join(key, strconv.Itoa(i))))
		}
		return n
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) {
			// Untagged, the encoder writes it as base64 !!binary, which
			// Parse decodes back.
			return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	case reflect.Int, reflect.Int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: formatFloat(v.Float())}
	}
	// Unreachable while schema.go has only the kinds above; the encoder
	// reports the bad node.
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!" + v.Kind().String(), Value: fmt.Sprint(v.Interface())}
}

// formatFloat writes f so that YAML reads it back as the same float: the
// shortest round-tripping form, with ".0" on integers so that it stays a
// float (10000.0), and YAML's spellings of the infinities and NaN.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	case math.IsNaN(f):
		return ".nan"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}
