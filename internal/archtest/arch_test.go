// Package archtest checks the import rules of DESIGN.md ("Packages, and who may
// import whom") against what the packages really import, from `go list -deps`.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/torusml/torus/"

// allowed are the direct imports DESIGN.md draws; a package may depend on
// whatever these reach, and on nothing else of ours.
var allowed = map[string][]string{
	"cmd/torus":       {"internal/cli"},
	"internal/cli":    {"launch", "trainer", "eval", "checkpoint", "recipe", "data", "model", "optim", "plan", "device"},
	"trainer":         {"model", "parallel", "data", "optim", "checkpoint", "device"},
	"launch":          {"parallel", "device"},
	"eval":            {"model", "data", "checkpoint", "device"},
	"checkpoint":      {"model", "data", "optim"},
	"parallel":        {"model"},
	"device":          {},
	"model":           {},
	"data":            {},
	"optim":           {},
	"recipe":          {},
	"plan":            {"model", "optim", "device"},
	"bench/report":    {},
	"internal/e2e":    {},
	"bench/stepbench": {"trainer", "model", "data", "optim", "parallel", "launch", "device"},
	"bench/plan":      {"plan", "model"},
	"bench/gpucheck":  {"device"},
}

func closure(pkg string, seen map[string]bool) {
	for _, d := range allowed[pkg] {
		if !seen[d] {
			seen[d] = true
			closure(d, seen)
		}
	}
}

type listed struct {
	ImportPath string
	Deps       []string
}

func TestImportRules(t *testing.T) {
	// Deps is the transitive closure, as `go list -deps` walks it.
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		if name == "internal/archtest" {
			continue
		}
		if _, ok := allowed[name]; !ok {
			t.Errorf("package %s has no rule here: add it to DESIGN.md's map and to this test", name)
			continue
		}
		ok2 := map[string]bool{}
		closure(name, ok2)
		var bad []string
		for _, d := range p.Deps {
			if dep, ours := strings.CutPrefix(d, module); ours && !ok2[dep] {
				bad = append(bad, dep)
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s depends on %v, which DESIGN.md does not allow (allowed: %v)", name, bad, allowed[name])
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d packages checked: go list found too little", checked)
	}
}
