package checkpoint_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/checkpoint"
)

// TestSaveFiles: a snapshot's extra files (the tokenizer's) are written as
// they are, listed and checksummed in the manifest, so Verify catches a
// changed byte; names that are not plain, or that the checkpoint uses, are
// refused.
func TestSaveFiles(t *testing.T) {
	ckpt := t.TempDir()
	s := snapshot(t, tinyConfig, 5)
	s.Files = map[string][]byte{"tokenizer.json": []byte(`{"model":{"type":"BPE"}}`), "tokenizer_config.json": []byte(`{}`)}
	dir, err := checkpoint.Save(ckpt, s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range s.Files {
		if !slices.Contains(c.Files(), filepath.Join(dir, name)) {
			t.Errorf("the manifest does not list %s: %v", name, c.Files())
		}
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != string(want) {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model":{"type":"BPF"}}`), 0o644)
	if err := c.Verify(); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Verify after a changed tokenizer.json: %v", err)
	}

	for i, bad := range []struct{ name, want string }{
		{"../tokenizer.json", "is not a plain file name"},
		{"config.json", "is one of the checkpoint's own"},
		{"manifest.json", "is the manifest itself"},
	} {
		s := snapshot(t, tinyConfig, 10+i)
		s.Files = map[string][]byte{bad.name: []byte("x")}
		if _, err := checkpoint.Save(ckpt, s); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("file %q: %v, want %q", bad.name, err, bad.want)
		}
	}
}
