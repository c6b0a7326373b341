package data_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/torusml/torus/data"
)

func TestOpenCorpusTextFile(t *testing.T) {
	path := writeFile(t, t.TempDir(), "book.txt", "call me ishmael\n")
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_file", Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	names, texts := readAll(t, c)
	if !slices.Equal(names, []string{path}) || !slices.Equal(texts, []string{"call me ishmael\n"}) {
		t.Errorf("got names %q texts %q", names, texts)
	}
}

// textTree makes the tree the text_dir tests walk and returns its root.
func textTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{
		"a.go":              "package a",
		"b.txt":             "bee",
		"notes/readme.txt":  "read me",
		"sub/c.go":          "package c",
		"sub/d.go":          "package d",
		"sub/empty.go":      "", // no text: skipped
		"sub/deeper/g.go":   "package g",
		".hidden/e.go":      "hidden",
		"testdata/f.go":     "test data",
		"sub/testdata/h.go": "test data",
	} {
		writeFile(t, root, name, content)
	}
	return root
}

func TestOpenCorpusTextDir(t *testing.T) {
	root := textTree(t)
	file := func(rel string) string { return filepath.Join(root, rel) }
	dir := func(rel string) string { return filepath.Join(root, rel) + string(filepath.Separator) }
	tests := []struct {
		name      string
		include   []string
		docPer    string
		wantNames []string
		wantTexts []string
	}{
		{
			name:      "all files",
			wantNames: []string{file("a.go"), file("b.txt"), file("notes/readme.txt"), file("sub/c.go"), file("sub/d.go"), file("sub/deeper/g.go")},
			wantTexts: []string{"package a", "bee", "read me", "package c", "package d", "package g"},
		},
		{
			name:      "go files",
			include:   []string{"*.go"},
			docPer:    "file",
			wantNames: []string{file("a.go"), file("sub/c.go"), file("sub/d.go"), file("sub/deeper/g.go")},
			wantTexts: []string{"package a", "package c", "package d", "package g"},
		},
		{
			name:      "go files by directory",
			include:   []string{"*.go"},
			docPer:    "directory",
			wantNames: []string{dir("."), dir("sub"), dir("sub/deeper")},
			wantTexts: []string{"package a", "package c\npackage d", "package g"},
		},
		{
			name:      "two globs by directory",
			include:   []string{"*.txt", "*.go"},
			docPer:    "directory",
			wantNames: []string{dir("."), dir("notes"), dir("sub"), dir("sub/deeper")},
			wantTexts: []string{"package a\nbee", "read me", "package c\npackage d", "package g"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_dir", Path: root, Include: tt.include, DocPer: tt.docPer}})
			if err != nil {
				t.Fatal(err)
			}
			names, texts := readAll(t, c)
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("names = %q\nwant %q", names, tt.wantNames)
			}
			if !slices.Equal(texts, tt.wantTexts) {
				t.Errorf("texts = %q\nwant %q", texts, tt.wantTexts)
			}
		})
	}
}

func TestOpenCorpusJSONL(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "docs.jsonl", `{"text":"one"}`+"\n"+
		"\n"+
		"   \n"+
		`{"id":2,"text":"two\nlines \u00e9"}`+"\r\n"+
		`{"body":"three","text":"3"}`) // no final newline
	bodies := writeFile(t, dir, "bodies.jsonl", `{"body":"x"}`+"\n"+`{"body":"y","text":7}`+"\n")
	tests := []struct {
		name      string
		src       data.SourceConfig
		wantNames []string
		wantTexts []string
	}{
		{
			name:      "default field",
			src:       data.SourceConfig{Type: "jsonl", Path: path},
			wantNames: []string{path + ":1", path + ":4", path + ":5"},
			wantTexts: []string{"one", "two\nlines é", "3"},
		},
		{
			name:      "named field",
			src:       data.SourceConfig{Type: "jsonl", Path: bodies, Field: "body"},
			wantNames: []string{bodies + ":1", bodies + ":2"},
			wantTexts: []string{"x", "y"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := data.OpenCorpus([]data.SourceConfig{tt.src})
			if err != nil {
				t.Fatal(err)
			}
			names, texts := readAll(t, c)
			if !slices.Equal(names, tt.wantNames) || !slices.Equal(texts, tt.wantTexts) {
				t.Errorf("got names %q texts %q\nwant names %q texts %q", names, texts, tt.wantNames, tt.wantTexts)
			}
		})
	}
}

func TestOpenCorpusSourcesInOrder(t *testing.T) {
	dir := t.TempDir()
	b := writeFile(t, dir, "b.txt", "bee")
	a := writeFile(t, dir, "a.jsonl", `{"text":"ay"}`+"\n"+`{"text":"aye"}`+"\n")
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_file", Path: b}, {Type: "jsonl", Path: a}})
	if err != nil {
		t.Fatal(err)
	}
	_, texts := readAll(t, c)
	if !slices.Equal(texts, []string{"bee", "ay", "aye"}) {
		t.Errorf("texts = %q", texts)
	}
	var sources []int
	for i := range c.Len() {
		sources = append(sources, c.Doc(i).Source)
	}
	if !slices.Equal(sources, []int{0, 1, 1}) {
		t.Errorf("sources = %v, want [0 1 1]", sources)
	}
}

func TestExpandPath(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "a.txt", "text")
	t.Setenv("TORUS_TEST_DATA", dir)
	for _, p := range []string{"$TORUS_TEST_DATA/a.txt", "${TORUS_TEST_DATA}/a.txt"} {
		c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_file", Path: p}})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got := c.Doc(0).Name; got != path {
			t.Errorf("%s expands to %s, want %s", p, got, path)
		}
	}
}

func TestCorpusSplit(t *testing.T) {
	c := jsonlCorpus(t, "0", "1", "2", "3", "4", "5", "6")
	tests := []struct {
		every     int
		wantTrain []string
		wantHeld  []string
	}{
		{0, []string{"0", "1", "2", "3", "4", "5", "6"}, nil},
		{-1, []string{"0", "1", "2", "3", "4", "5", "6"}, nil},
		{1, nil, []string{"0", "1", "2", "3", "4", "5", "6"}},
		{3, []string{"0", "1", "3", "4", "6"}, []string{"2", "5"}},
		{7, []string{"0", "1", "2", "3", "4", "5"}, []string{"6"}},
		{10, []string{"0", "1", "2", "3", "4", "5", "6"}, nil},
	}
	for _, tt := range tests {
		train, held := c.Split(tt.every)
		_, trainTexts := readAll(t, train)
		_, heldTexts := readAll(t, held)
		if !slices.Equal(trainTexts, tt.wantTrain) || !slices.Equal(heldTexts, tt.wantHeld) {
			t.Errorf("Split(%d) = train %q held %q, want %q %q", tt.every, trainTexts, heldTexts, tt.wantTrain, tt.wantHeld)
		}
	}
}

func TestCorpusReadOutOfRange(t *testing.T) {
	c := jsonlCorpus(t, "only")
	for _, i := range []int{-1, 1} {
		if _, err := c.Read(i); err == nil {
			t.Errorf("Read(%d) gave no error", i)
		}
	}
}

func TestOpenCorpusTextDirSymlinkRoot(t *testing.T) {
	root := textTree(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(root, link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_dir", Path: link, Include: []string{"*.go"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, texts := readAll(t, c); !slices.Equal(texts, []string{"package a", "package c", "package d", "package g"}) {
		t.Errorf("texts through a symlinked root = %q", texts)
	}
}
