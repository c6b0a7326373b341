package data_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

func TestOpenCorpusErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := writeFile(t, dir, "empty.txt", "")
	emptyJSONL := writeFile(t, dir, "empty.jsonl", "")
	blankJSONL := writeFile(t, dir, "blank.jsonl", "\n  \n")
	badJSON := writeFile(t, dir, "bad.jsonl", `{"text":"ok"}`+"\n"+`{"text": "unterminated}`+"\n")
	noField := writeFile(t, dir, "nofield.jsonl", `{"text":"ok"}`+"\n\n"+`{"body":"x"}`+"\n")
	notString := writeFile(t, dir, "notstring.jsonl", `{"text":42}`+"\n")
	nullField := writeFile(t, dir, "null.jsonl", `{"text":null}`+"\n")
	emptyField := writeFile(t, dir, "emptyfield.jsonl", `{"text":""}`+"\n")
	notObject := writeFile(t, dir, "array.jsonl", `["text"]`+"\n")
	goDir := filepath.Join(dir, "gotree")
	writeFile(t, goDir, "a.txt", "not go")
	writeFile(t, goDir, "sub/empty.go", "")
	writeFile(t, goDir, "testdata/b.go", "package b")

	tests := []struct {
		name string
		srcs []data.SourceConfig
		want []string // substrings of the error
	}{
		{"text_file missing", []data.SourceConfig{{Type: "text_file", Path: missing}}, []string{missing}},
		{"text_dir missing", []data.SourceConfig{{Type: "text_dir", Path: missing}}, []string{missing}},
		{"jsonl missing", []data.SourceConfig{{Type: "jsonl", Path: missing}}, []string{missing}},
		{"no path", []data.SourceConfig{{Type: "text_file"}}, []string{"no path"}},
		{"unset variable", []data.SourceConfig{{Type: "text_file", Path: "$TORUS_SURELY_UNSET_VAR/x"}}, []string{"$TORUS_SURELY_UNSET_VAR"}},
		{"unknown type", []data.SourceConfig{{Type: "csv", Path: empty}}, []string{empty, `"csv"`}},
		{"text_file is a directory", []data.SourceConfig{{Type: "text_file", Path: dir}}, []string{dir}},
		{"text_dir is a file", []data.SourceConfig{{Type: "text_dir", Path: empty}}, []string{empty}},
		{"jsonl is a directory", []data.SourceConfig{{Type: "jsonl", Path: dir}}, []string{dir}},
		{"text_dir no matching files", []data.SourceConfig{{Type: "text_dir", Path: goDir, Include: []string{"*.go"}}}, []string{goDir, "no documents"}},
		{"text_dir bad glob", []data.SourceConfig{{Type: "text_dir", Path: goDir, Include: []string{"[*.go"}}}, []string{goDir, "[*.go"}},
		{"text_dir bad doc_per", []data.SourceConfig{{Type: "text_dir", Path: goDir, DocPer: "line"}}, []string{goDir, `"line"`}},
		{"empty text_file", []data.SourceConfig{{Type: "text_file", Path: empty}}, []string{empty, "empty"}},
		{"empty jsonl", []data.SourceConfig{{Type: "jsonl", Path: emptyJSONL}}, []string{emptyJSONL, "empty"}},
		{"blank jsonl", []data.SourceConfig{{Type: "jsonl", Path: blankJSONL}}, []string{blankJSONL, "no documents"}},
		{"invalid JSON", []data.SourceConfig{{Type: "jsonl", Path: badJSON}}, []string{badJSON + ":2"}},
		{"not an object", []data.SourceConfig{{Type: "jsonl", Path: notObject}}, []string{notObject + ":1"}},
		{"missing field", []data.SourceConfig{{Type: "jsonl", Path: noField}}, []string{noField + ":3", `"text"`}},
		{"missing named field", []data.SourceConfig{{Type: "jsonl", Path: noField, Field: "body"}}, []string{noField + ":1", `"body"`}},
		{"field not a string", []data.SourceConfig{{Type: "jsonl", Path: notString}}, []string{notString + ":1", "not a string"}},
		{"field null", []data.SourceConfig{{Type: "jsonl", Path: nullField}}, []string{nullField + ":1", "not a string"}},
		{"field empty", []data.SourceConfig{{Type: "jsonl", Path: emptyField}}, []string{emptyField + ":1", "empty"}},
		{"no sources", nil, []string{"no documents"}},
		{"second source bad", []data.SourceConfig{{Type: "jsonl", Path: noField, Field: "text"}, {Type: "text_file", Path: missing}}, []string{noField + ":3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := data.OpenCorpus(tt.srcs)
			if err == nil {
				t.Fatalf("OpenCorpus gave %d documents and no error", c.Len())
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "data: ") {
				t.Errorf("error %q does not begin with %q", msg, "data: ")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}
