package data_test

import (
	"os/exec"
	"path/filepath"
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
