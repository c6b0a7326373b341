package data_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// TestOpenCorpusGOROOT opens the Go source tree the way the example recipes do.
func TestOpenCorpusGOROOT(t *testing.T) {
	if err := exec.Command("go", "env", "GOROOT").Run(); err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	c, err := data.OpenCorpus([]data.SourceConfig{{
		Type: "text_dir", Path: "$GOROOT/src", Include: []string{"*.go"}, DocPer: "directory",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() <= 100 {
		t.Fatalf("%d documents, want > 100", c.Len())
	}
	for i := range c.Len() {
		if d := c.Doc(i); strings.HasSuffix(d.Name, filepath.FromSlash("/src/strings/")) {
			text, err := c.Read(i)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(text), "package strings") {
				t.Errorf("%s does not contain %q", d.Name, "package strings")
			}
			return
		}
	}
	t.Errorf("no document for src/strings/ among %d", c.Len())
}

// TestOpenCorpusGOROOTExclude opens the Go source tree without its commands
// and vendored code, as the example recipes do.
func TestOpenCorpusGOROOTExclude(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	if v := os.Getenv("GOROOT"); v != "" {
		goroot = v // what $GOROOT expands to
	}
	src := filepath.Join(goroot, "src") + string(filepath.Separator)
	open := func(exclude []string) []string {
		t.Helper()
		c, err := data.OpenCorpus([]data.SourceConfig{{
			Type: "text_dir", Path: "$GOROOT/src", Include: []string{"*.go"}, Exclude: exclude, DocPer: "directory",
		}})
		if err != nil {
			t.Fatal(err)
		}
		var rels []string // below src, with a leading and a trailing slash
		for i := range c.Len() {
			rel, ok := strings.CutPrefix(c.Doc(i).Name, src)
			if !ok {
				t.Fatalf("document %s is not below %s", c.Doc(i).Name, src)
			}
			rels = append(rels, "/"+filepath.ToSlash(rel))
		}
		return rels
	}
	excluded := func(rel string) bool { return strings.Contains(rel, "/cmd/") || strings.Contains(rel, "/vendor/") }
	all, kept := open(nil), open([]string{"cmd", "vendor"})
	if !slices.ContainsFunc(all, excluded) {
		t.Fatalf("no document below a cmd or vendor directory among %d without exclude", len(all))
	}
	for _, rel := range kept {
		if excluded(rel) {
			t.Errorf("document %s is below an excluded directory", rel)
		}
	}
	if !slices.Contains(kept, "/strings/") || !slices.Contains(kept, "/net/http/") {
		t.Errorf("strings/ or net/http/ missing among the %d documents kept", len(kept))
	}
	t.Logf("%d documents, %d without cmd and vendor", len(all), len(kept))
}
