package data_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// writeFile writes content to dir/name, making parent directories, and
// returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// jsonlCorpus opens a corpus of one JSONL source whose documents are docs.
func jsonlCorpus(t *testing.T, docs ...string) *data.Corpus {
	t.Helper()
	var sb strings.Builder
	for _, d := range docs {
		line, err := json.Marshal(map[string]string{"text": d})
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(line)
		sb.WriteByte('\n')
	}
	path := writeFile(t, t.TempDir(), "docs.jsonl", sb.String())
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newLoader is a byte-tokenizer loader over c.
func newLoader(t *testing.T, c *data.Corpus, cfg data.LoaderConfig) *data.Loader {
	t.Helper()
	l, err := data.NewLoader(c, data.ByteTokenizer{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ids is the byte-tokenizer encoding of s.
func ids(s string) []int32 { return data.ByteTokenizer{}.Encode([]byte(s)) }

// readAll returns the names and texts of all documents of c.
func readAll(t *testing.T, c *data.Corpus) (names, texts []string) {
	t.Helper()
	for i := range c.Len() {
		text, err := c.Read(i)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		names = append(names, c.Doc(i).Name)
		texts = append(texts, string(text))
	}
	return names, texts
}
