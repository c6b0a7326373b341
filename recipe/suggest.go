package recipe

import (
	"fmt"
	"reflect"
	"strings"
)

// unknownKey is the message for name, which is not a key of the struct type
// t, the value of key parent. It suggests a close match among t's keys, or
// else a key of that exact name elsewhere in the recipe ("lr" at the top
// means "optim.lr"). With dotted, name and a sibling suggestion are written
// as full dotted keys (a --set names the full key).
func unknownKey(t reflect.Type, parent, name string, dotted bool) string {
	shown := name
	if dotted {
		shown = join(parent, name)
	}
	msg := fmt.Sprintf("unknown key %q", shown)
	if s := closest(name, keysOf(t)); s != "" {
		if dotted {
			s = join(parent, s)
		}
		return fmt.Sprintf("%s (did you mean %q?)", msg, s)
	}
	for _, k := range allKeys(reflect.TypeFor[Recipe](), "") {
		leaf := k[strings.LastIndexByte(k, '.')+1:]
		if strings.EqualFold(leaf, name) && k != join(parent, leaf) {
			return fmt.Sprintf("%s (did you mean %q?)", msg, k)
		}
	}
	return msg
}

// keysOf is the YAML keys of struct type t, in schema order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k, ok := yamlKey(t.Field(i)); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// allKeys is every dotted key under struct type t, sections included; list
// elements are written "N" (data.sources.N.path).
func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		k, ok := yamlKey(f)
		if !ok {
			continue
		}
		k = join(prefix, k)
		keys = append(keys, k)
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft, k = ft.Elem(), k+".N"
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, allKeys(ft, k)...)
		}
	}
	return keys
}

// closest is the candidate that name most likely misspells, or "": one a
// few edits away, differing only in case, or of which name is a prefix (or
// the other way round).
func closest(name string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(strings.ToLower(name), strings.ToLower(c))
		short := min(len(name), len(c))
		near := d <= max(1, short/3) ||
			(short >= 3 && (strings.HasPrefix(c, name) || strings.HasPrefix(name, c)))
		if near && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1
// ("modle" is one edit from "model").
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
