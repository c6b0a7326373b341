package data_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// TestHFTokenizerDocuments: a Hugging Face tokenizer.json (a tiny BPE whose
// template puts <s> before and </s> after a text) tokenizes every document
// between them, as add_special_tokens does, and keeps its file for the
// checkpoints; a spec that is neither byte nor a file names what it tried.
func TestHFTokenizerDocuments(t *testing.T) {
	tok, err := data.NewTokenizer("testdata/tinybpe")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tok.Encode([]byte("abc ab"))); got != "[7 5 6]" {
		t.Errorf("Encode(abc ab) = %s, want [7 5 6]", got)
	}
	files := tok.(data.FileTokenizer).Files()
	if len(files["tokenizer.json"]) == 0 || len(files) != 1 {
		t.Errorf("files %v, want tokenizer.json alone", len(files))
	}
	l, err := data.NewLoader(jsonlCorpus(t, "abc", "ab ab"), tok, data.LoaderConfig{SeqLen: 9})
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	// <s> abc </s> <s> ab _ ab </s> <s> (the first document again)
	if got := fmt.Sprint(b.Tokens); got != "[0 7 1 0 6 5 6 1 0]" {
		t.Errorf("tokens %s, want [0 7 1 0 6 5 6 1 0]", got)
	}
	if got := fmt.Sprint(b.Doc); got != "[0 0 0 1 1 1 1 1 2]" {
		t.Errorf("documents %s, want [0 0 0 1 1 1 1 1 2]", got)
	}

	if _, err := data.NewTokenizer("no/such/tokenizer.json"); err == nil || !strings.Contains(err.Error(), `not "byte", and not a tokenizer.json or a model folder`) {
		t.Errorf("a missing tokenizer: %v", err)
	}
}
