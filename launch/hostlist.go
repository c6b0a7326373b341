package launch

import (
	"fmt"
	"strconv"
	"strings"
)

// ExpandHostList expands a Slurm host list, as SLURM_JOB_NODELIST writes it,
// into host names in order: "gpu[01-04,07],cpu3" is gpu01 gpu02 gpu03 gpu04
// gpu07 cpu3. Ranges keep the low end's zero padding; a name may hold several
// bracket groups ("r[1-2]n[1-2]" is r1n1 r1n2 r2n1 r2n2).
func ExpandHostList(list string) ([]string, error) {
	var hosts []string
	for _, entry := range splitTop(list) {
		if entry == "" {
			continue
		}
		h, err := expandEntry(entry)
		if err != nil {
			return nil, fmt.Errorf("host list %q: %w", list, err)
		}
		hosts = append(hosts, h...)
	}
	return hosts, nil
}

// splitTop splits at the commas that are outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// expandEntry expands one host name pattern: its first bracket group, then the
// rest of the name recursively.
func expandEntry(e string) ([]string, error) {
	open := strings.IndexByte(e, '[')
	if open < 0 {
		if strings.ContainsRune(e, ']') {
			return nil, fmt.Errorf("%q: ']' without '['", e)
		}
		return []string{e}, nil
	}
	end := strings.IndexByte(e[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("%q: '[' without ']'", e)
	}
	end += open
	prefix, body, rest := e[:open], e[open+1:end], e[end+1:]
	tails, err := expandEntry(rest)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, part := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || lo == "" {
			return nil, fmt.Errorf("%q: %q is not a number", e, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("%q: %q is not a number", e, hi)
			}
			if b < a {
				return nil, fmt.Errorf("%q: range %s runs backwards", e, part)
			}
		}
		for n := a; n <= b; n++ {
			num := fmt.Sprintf("%0*d", len(lo), n)
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return out, nil
}
