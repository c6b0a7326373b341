// Package archtest holds the code to the package table of README.md ("Layout"):
// every package has a row, every row is a package, each package imports only
// what its row names (and what those import in turn), every import a row names
// is real, and every package says what it owns in its doc comment. The table is
// the map DESIGN.md's package list points at.
package archtest

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/torusml/torus"

type listed struct {
	ImportPath string
	Name       string
	Dir        string
	Doc        string
	GoFiles    []string
	Imports    []string // direct
	Deps       []string // transitive, as `go list -deps` walks them
}

// ours lists the module's packages by their path inside the module.
func ours(t *testing.T) map[string]listed {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// rel is an import path of ours inside the module ("trainer"), or "" for another module's.
func rel(path string) string {
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

var ticked = regexp.MustCompile("`([^`]+)`")

// layout reads README.md's "Layout" table: package -> the packages it may import directly.
func layout(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "## Layout":
			in = true
		case in && strings.HasPrefix(line, "## "):
			in = false
		case in && strings.HasPrefix(line, "| `"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 3 {
				t.Fatalf("README.md Layout row %q: want 3 cells (package, owns, imports), got %d", line, len(cells))
			}
			pkg := ticked.FindStringSubmatch(cells[0])[1]
			if _, dup := rows[pkg]; dup {
				t.Errorf("README.md Layout: %s has two rows", pkg)
			}
			rows[pkg] = []string{}
			for _, m := range ticked.FindAllStringSubmatch(cells[2], -1) {
				rows[pkg] = append(rows[pkg], m[1])
			}
		}
	}
	if len(rows) < 10 {
		t.Fatalf("README.md has %d rows in its Layout table: did the heading change?", len(rows))
	}
	return rows
}

func closure(allowed map[string][]string, pkg string, seen map[string]bool) {
	for _, d := range allowed[pkg] {
		if !seen[d] {
			seen[d] = true
			closure(allowed, d, seen)
		}
	}
}

func TestImportRules(t *testing.T) {
	pkgs, allowed := ours(t), layout(t)
	for name := range allowed {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("README.md's Layout has a row for %s, which go list does not find", name)
		}
	}
	for name, p := range pkgs {
		direct, ok := allowed[name]
		if !ok {
			t.Errorf("package %s has no row in README.md's Layout table: add one (what it owns, what it imports)", name)
			continue
		}
		may := map[string]bool{}
		closure(allowed, name, may)
		var bad []string
		for _, d := range p.Deps {
			if dep := rel(d); dep != "" && !may[dep] {
				bad = append(bad, dep)
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s depends on %v, which README.md's Layout does not allow (it imports %v)", name, bad, direct)
		}
		var imports []string
		for _, d := range p.Imports {
			if r := rel(d); r != "" {
				imports = append(imports, r)
			}
		}
		for _, d := range direct {
			if !slices.Contains(imports, d) {
				t.Errorf("README.md's Layout says %s imports %s, which it does not: remove it from the row", name, d)
			}
		}
	}
}

// TestPackagesSayWhatTheyOwn: every package has a doc comment, and every
// library package keeps it in doc.go.
func TestPackagesSayWhatTheyOwn(t *testing.T) {
	for name, p := range ours(t) {
		if len(p.GoFiles) == 0 {
			continue // tests only (internal/e2e, this one): the doc comment is in a test file
		}
		if p.Doc == "" {
			t.Errorf("package %s has no doc comment", name)
		}
		if p.Name != "main" && !slices.Contains(p.GoFiles, "doc.go") {
			t.Errorf("package %s has no doc.go", name)
		}
	}
}
