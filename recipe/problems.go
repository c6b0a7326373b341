package recipe

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a recipe.
type Problem struct {
	// Where the value came from: "recipe.yaml:12", "--set optim.lr=x",
	// "(default)", or "" for a Recipe built in code.
	Where string
	// Key is the dotted key, e.g. "optim.lr" or "data.sources.0.path"; ""
	// for the recipe as a whole (malformed YAML, an unknown top-level key).
	Key string
	Msg string
}

// String is "where: key: msg", leaving out the parts that are empty, and the
// key when Where is a --set of that same key (it already names it).
func (p Problem) String() string {
	var parts []string
	if p.Where != "" {
		parts = append(parts, p.Where)
	}
	if p.Key != "" && !strings.HasPrefix(p.Where, "--set "+p.Key+"=") {
		parts = append(parts, p.Key)
	}
	return strings.Join(append(parts, p.Msg), ": ")
}

// Problems is every problem found in a recipe. Its Error is one problem per
// line, in the order of the file (decoding) or of the schema (Validate).
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// err is ps as an error: nil when there are none (never a nil Problems in a
// non-nil interface).
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// origin is where one key's value came from.
type origin struct {
	file string
	line int
	set  string // the whole --set argument, "key=value"; empty for a file
}

func (o origin) String() string {
	if o.set != "" {
		return "--set " + o.set
	}
	return fmt.Sprintf("%s:%d", o.file, o.line)
}

// where says where key's value came from, for a Problem: the file line or
// --set that gave it, else "(default)", or "" when r was not parsed. A key
// inside a list element that the file or a --set wrote but that was itself
// left out takes the element's origin, since the element has no default.
func (r Recipe) where(key string) string {
	if r.origins == nil {
		return ""
	}
	if o, ok := r.origins[key]; ok {
		return o.String()
	}
	for k := key; ; {
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			return "(default)"
		}
		k = k[:i]
		if _, err := strconv.Atoi(k[strings.LastIndexByte(k, '.')+1:]); err == nil {
			if o, ok := r.origins[k]; ok {
				return o.String()
			}
			return "(default)"
		}
	}
}
