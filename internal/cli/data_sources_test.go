package cli_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainSFTPasskeyHeldout trains the tiny recipe on an sft and a passkey
// source: the passkey lengths default to data.seq_len (so the recipe's seq_len
// reaches the data package), and data.heldout reaches the corpus (holding out
// every document fails).
func TestTrainSFTPasskeyHeldout(t *testing.T) {
	dir := t.TempDir()
	chat := write(t, dir, "chat.jsonl", `{"prompt": "2+2?", "response": "4"}`+"\n"+
		`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}`+"\n")
	sources := fmt.Sprintf(`data:
  heldout: %%d
  sources:
    - type: sft
      path: %s
    - type: passkey
      count: 2
  seq_len: 128`, chat)
	base := strings.Replace(tinyRecipe, `data:
  sources:
    - type: text_file
      path: {{DATA}}
  seq_len: 16`, sources, 1)
	if base == tinyRecipe {
		t.Fatal("the tiny recipe's data section changed; update this test")
	}
	for _, tt := range []struct {
		heldout int
		fail    string // "" : trains
	}{
		{1, ""},
		{4, "heldout 4 leaves no document to train on"},
	} {
		rec := write(t, dir, fmt.Sprintf("r%d.yaml", tt.heldout), fmt.Sprintf(base, tt.heldout))
		code, _, stderr := run("train", rec, "--out", filepath.Join(dir, fmt.Sprintf("run%d", tt.heldout)), "--progress", "plain")
		switch {
		case tt.fail == "" && code != 0:
			t.Errorf("heldout %d: exit %d: %s", tt.heldout, code, stderr)
		case tt.fail != "" && (code == 0 || !strings.Contains(stderr, tt.fail)):
			t.Errorf("heldout %d: exit %d, %q; want an error about %q", tt.heldout, code, stderr, tt.fail)
		}
	}
}
