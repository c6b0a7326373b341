package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the recipe file at path and resolves it like Parse, with
// sets as --set overrides ("optim.lr=3e-4").
func Load(path string, sets []string) (Recipe, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Recipe{}, fmt.Errorf("recipe: %w", err) // the *PathError names the path
	}
	return Parse(path, src, sets)
}

// Parse resolves a recipe: Default, then the YAML in src decoded over it
// (name is the file name used in errors), then each --set override in order,
// then per-source defaults, then Validate.
//
// An override is "dotted.key=value", the value read as YAML: optim.lr=3e-4,
// model.layers=2, data.sources.0.path=/x. It may address list element N
// only when N exists or is the next one (N == current length), which it
// creates; an empty value is the empty string.
//
// Errors are Problems, each naming the file line (or the --set) and the key.
// When decoding or an override fails the Recipe is zero; when only Validate
// fails the resolved Recipe comes back with the error, for display.
func Parse(name string, src []byte, sets []string) (Recipe, error) {
	r := Default()
	r.origins = map[string]origin{}
	d := &decoder{origins: r.origins}

	doc, p := parseYAML(name, src)
	if p != nil {
		return Recipe{}, Problems{*p}
	}
	if doc != nil {
		d.at = func(n *yaml.Node) origin { return origin{file: name, line: n.Line} }
		d.decode(reflect.ValueOf(&r).Elem(), doc, "")
	}
	for _, s := range sets {
		d.set(&r, s)
	}
	if len(d.probs) > 0 {
		return Recipe{}, d.probs
	}
	fillSourceDefaults(&r)
	fillTokenizerDefault(&r)
	return r, r.Validate()
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses src into the node of its one document: nil for an empty
// file. A syntax error becomes a Problem at its line.
func parseYAML(name string, src []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlProblem(name, src, err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlProblem(name, src, err)
	default:
		return nil, &Problem{Where: fmt.Sprintf("%s:%d", name, more.Line), Msg: "a recipe is one YAML document; found another"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlProblem turns a syntax error from yaml.v3 into a Problem at its line.
// yaml.v3 numbers the lines of some errors from 0 and of others from the
// start of the enclosing block, so the line is found instead as the first
// one at which the file, cut after it, fails with the same message; the
// library's line is the fallback.
func yamlProblem(name string, src []byte, err error) *Problem {
	line, msg := splitYAMLError(err)
	if l := firstFailingLine(src, msg); l > 0 {
		line = strconv.Itoa(l)
	}
	if line == "" {
		return &Problem{Where: name, Msg: "malformed YAML: " + msg}
	}
	return &Problem{Where: name + ":" + line, Msg: "malformed YAML: " + msg}
}

// splitYAMLError splits "yaml: line 3: msg" into "3" and "msg".
func splitYAMLError(err error) (line, msg string) {
	s := err.Error()
	if m := yamlErrLine.FindStringSubmatch(s); m != nil {
		return m[1], m[2]
	}
	return "", strings.TrimPrefix(s, "yaml: ")
}

// firstFailingLine is the first line N (from 1) such that the lines of src
// up to N fail to parse with msg; 0 if none does, or src is too long to try.
func firstFailingLine(src []byte, msg string) int {
	lines := bytes.SplitAfter(src, []byte("\n"))
	if len(lines) > 2000 {
		return 0
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		dec := yaml.NewDecoder(bytes.NewReader(src[:end]))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) {
				if _, m := splitYAMLError(err); m == msg {
					return i + 1
				}
			}
			break
		}
	}
	return 0
}

// decoder writes YAML nodes into the Recipe through reflection, using the
// yaml tags of schema.go, so that every error can name its key and line.
type decoder struct {
	origins map[string]origin
	at      func(n *yaml.Node) origin // where a node came from
	probs   Problems
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.probs = append(d.probs, Problem{Where: d.at(n).String(), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// mark records that key got its value from n.
func (d *decoder) mark(key string, n *yaml.Node) { d.origins[key] = d.at(n) }

// decode writes n into v, the value of key. Mappings merge into structs
// (keys left out keep their value); lists replace slices.
func (d *decoder) decode(v reflect.Value, n *yaml.Node, key string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch v.Kind() {
	case reflect.Struct:
		if isNull(n) {
			return // "model:" with nothing under it: all defaults
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, key, "must be a mapping, got %s", describe(n))
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.fail(k, key, "keys must be names, got %s", describe(k))
				continue
			}
			if line, dup := seen[k.Value]; dup {
				d.fail(k, key, "key %q appears twice (first on line %d)", k.Value, line)
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fieldByName(v.Type(), k.Value)
			if !ok {
				d.fail(k, key, "%s", unknownKey(v.Type(), key, k.Value, false))
				continue
			}
			child := join(key, k.Value)
			d.mark(child, k)
			d.decode(v.Field(f), val, child)
		}
	case reflect.Slice:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "must be a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			v.SetZero() // nil, so that "[]" reads back equal
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			child := join(key, strconv.Itoa(i))
			d.mark(child, item)
			d.decode(s.Index(i), item, child)
		}
		v.Set(s)
	default:
		d.scalar(v, n, key)
	}
}

// scalar writes the scalar n into v, a string, bool, integer or float.
func (d *decoder) scalar(v reflect.Value, n *yaml.Node, key string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, "must be %s, got %s", wantKind(v.Kind()), describe(n))
		return
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		switch tag {
		case "!!null":
			d.fail(n, key, `has no value (write "" for the empty string)`)
		case "!!binary": // what YAML writes for a string that is not UTF-8
			var s string
			if err := n.Decode(&s); err != nil {
				d.fail(n, key, "bad !!binary string: %v", err)
				return
			}
			v.SetString(s)
		default:
			v.SetString(n.Value) // a number or boolean is taken as written: name: 2024
		}
	case reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, key, "must be true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		switch tag {
		case "!!int":
			if err := n.Decode(&i); err != nil {
				d.fail(n, key, "must be an integer that fits in 64 bits, got %s", n.Value)
				return
			}
		case "!!float": // 1e3, or an integer too large for int64
			var f float64
			if err := n.Decode(&f); err != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
				d.fail(n, key, "must be an integer, got %s", describe(n))
				return
			}
			i = int64(f)
		default:
			d.fail(n, key, "must be an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(n, key, "%d is out of range", i)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if (tag != "!!float" && tag != "!!int") || n.Decode(&f) != nil {
			d.fail(n, key, "must be a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		// Unreachable while schema.go has only the kinds above.
		d.fail(n, key, "recipe: no decoder for a field of kind %s", v.Kind())
	}
}

// fieldByName is the index of the field of struct type t whose yaml key is
// name.
func fieldByName(t reflect.Type, name string) (int, bool) {
	for i := range t.NumField() {
		if k, ok := yamlKey(t.Field(i)); ok && k == name {
			return i, true
		}
	}
	return 0, false
}

// yamlKey is the YAML key of field f; false for unexported and "-" fields.
func yamlKey(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "-" || k == "" {
		return "", false
	}
	return k, true
}

func join(key, child string) string {
	if key == "" {
		return child
	}
	return key + "." + child
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what a node is, for "must be X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "no value"
		}
		return n.ShortTag() + " " + n.Value
	}
	return "an alias"
}

func wantKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Struct:
		return "a mapping"
	}
	return k.String()
}
