package recipe

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// set applies one --set override, "dotted.key=value".
func (d *decoder) set(r *Recipe, arg string) {
	where := origin{set: arg}
	d.at = func(*yaml.Node) origin { return where }
	bad := func(key, format string, args ...any) {
		d.probs = append(d.probs, Problem{Where: where.String(), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	key, val, ok := strings.Cut(arg, "=")
	if !ok || key == "" {
		bad("", "want key=value, e.g. optim.lr=3e-4")
		return
	}

	// Walk to the field, creating list element N when N is the length.
	v, path := reflect.ValueOf(r).Elem(), ""
	for _, part := range strings.Split(key, ".") {
		switch v.Kind() {
		case reflect.Struct:
			f, ok := fieldByName(v.Type(), part)
			if !ok {
				bad(key, "%s", unknownKey(v.Type(), path, part, true))
				return
			}
			v = v.Field(f)
		case reflect.Slice:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 {
				bad(key, "%s is a list: %q is not an element number", path, part)
				return
			}
			if i > v.Len() {
				bad(key, "%s has %d elements: a --set may add element %d, not %d", path, v.Len(), v.Len(), i)
				return
			}
			if i == v.Len() {
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
				d.origins[join(path, part)] = where // its keys left unset have no default
			}
			v = v.Index(i)
		default:
			bad(key, "%s is %s, it has no key %q", path, wantKind(v.Kind()), part)
			return
		}
		path = join(path, part)
	}

	// The value replaces whatever the file said about key and below.
	for k := range d.origins {
		if strings.HasPrefix(k, key+".") {
			delete(d.origins, k)
		}
	}
	d.origins[key] = where
	if val == "" && v.Kind() == reflect.String {
		v.SetString("")
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(val), &doc); err != nil {
		bad(key, "bad value: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"} // an empty value, or only a comment
	if len(doc.Content) > 0 {
		n = doc.Content[0]
	}
	d.decode(v, n, key)
}
