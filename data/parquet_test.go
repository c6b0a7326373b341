package data_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

// The files of testdata/parquet are written by parquet-go's writer (see
// testdata/parquetgen, which says how to make them again), not by torus:
// row i of the file named name holds parquetRowText(name, i).
func parquetRowText(name string, i int) (text string, ok bool) {
	switch {
	case i%7 == 3:
		return "", false // null
	case i%11 == 5:
		return "", true
	}
	words := []string{"alpha", "beta", "gamma", "delta"}
	return fmt.Sprintf("%s row %d: %s", name, i, strings.Repeat(words[i%4]+" ", 1+i%5)), true
}

// parquetWant is the documents of a file of rows rows: names and texts.
func parquetWant(path string, rows int) (names, texts []string) {
	for i := range rows {
		if s, ok := parquetRowText(filepath.Base(path), i); ok && s != "" {
			names = append(names, fmt.Sprintf("%s[%d]", path, i))
			texts = append(texts, s)
		}
	}
	return names, texts
}

func openParquet(t *testing.T, src data.SourceConfig) *data.Corpus {
	t.Helper()
	src.Type = "parquet"
	c, err := data.OpenCorpus([]data.SourceConfig{src})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestParquetFiles reads every row of files of each page version, encoding
// and codec: each row with a value is a document named by its row, null and
// empty rows are skipped, and documents read in any order.
func TestParquetFiles(t *testing.T) {
	for _, name := range []string{
		"plain_v1_uncompressed.parquet", // PLAIN, several pages per row group
		"delta_v1_snappy.parquet",       // DELTA_BYTE_ARRAY
		"dict_v1_snappy.parquet",        // dictionary pages, then PLAIN once the dictionary is full
		"dict_v2_zstd.parquet",
		"plain_v2_gzip.parquet",
		"plain_v1_lz4raw.parquet",
		"dict_v2_brotli.parquet",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "parquet", name)
			c := openParquet(t, data.SourceConfig{Path: path})
			wantNames, wantTexts := parquetWant(path, 100)
			names, texts := readAll(t, c)
			if !reflect.DeepEqual(names, wantNames) {
				t.Fatalf("names\n%q\nwant\n%q", names, wantNames)
			}
			if !reflect.DeepEqual(texts, wantTexts) {
				t.Fatalf("texts\n%q\nwant\n%q", texts, wantTexts)
			}
			for i := c.Len() - 1; i >= 0; i -= 3 { // out of order: each read finds its page
				got, err := c.Read(i)
				if err != nil || string(got) != wantTexts[i] {
					t.Fatalf("Read(%d) = %q, %v; want %q", i, got, err, wantTexts[i])
				}
			}
		})
	}
}

// TestParquetColumns: a required column, and a column that is not the first.
func TestParquetColumns(t *testing.T) {
	path := filepath.Join("testdata", "parquet", "required.parquet")
	_, texts := readAll(t, openParquet(t, data.SourceConfig{Path: path}))
	var want []string
	for i := range 30 {
		if s, _ := parquetRowText("required.parquet", i); s != "" {
			want = append(want, s)
		}
	}
	if !reflect.DeepEqual(texts, want) {
		t.Fatalf("texts\n%q\nwant\n%q", texts, want)
	}

	path = filepath.Join("testdata", "parquet", "types.parquet")
	names, _ := readAll(t, openParquet(t, data.SourceConfig{Path: path, Column: "text"}))
	if len(names) != 4 || names[0] != path+"[0]" { // row 3 is empty
		t.Fatalf("names %q", names)
	}
}

// TestParquetFolder reads a Hugging Face dataset's folder: its shards in name
// order, or those an include glob picks.
func TestParquetFolder(t *testing.T) {
	root := filepath.Join("testdata", "parquet", "hf")
	shard := func(name string) string { return filepath.Join(root, "data", name) }
	for _, tt := range []struct {
		include []string
		shards  []string
	}{
		{nil, []string{"test-00000-of-00001.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"}},
		{[]string{"train-*.parquet"}, []string{"train-00000-of-00002.parquet", "train-00001-of-00002.parquet"}},
	} {
		var wantNames, wantTexts []string
		for _, s := range tt.shards {
			n, x := parquetWant(shard(s), 20)
			wantNames, wantTexts = append(wantNames, n...), append(wantTexts, x...)
		}
		names, texts := readAll(t, openParquet(t, data.SourceConfig{Path: root, Include: tt.include}))
		if !reflect.DeepEqual(names, wantNames) || !reflect.DeepEqual(texts, wantTexts) {
			t.Errorf("include %q: names\n%q\nwant\n%q", tt.include, names, wantNames)
		}
	}
}

// TestParquetResume: a loader over a parquet folder resumes from its cursor
// exactly, as over any other source.
func TestParquetResume(t *testing.T) {
	c := openParquet(t, data.SourceConfig{Path: filepath.Join("testdata", "parquet", "hf")})
	cfg := data.LoaderConfig{SeqLen: 64, Shuffle: true, Seed: 3, Lanes: 4}
	a := newLoader(t, c, cfg)
	for range 7 {
		if _, err := a.Next(); err != nil {
			t.Fatal(err)
		}
	}
	b := newLoader(t, c, cfg)
	if err := b.Seek(a.Cursor()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		x, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		y, err := b.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("batch %d after the seek differs", i)
		}
	}
}

// TestParquetErrors: every problem names the file and says what is wrong.
func TestParquetErrors(t *testing.T) {
	dir := t.TempDir()
	types := filepath.Join("testdata", "parquet", "types.parquet")
	good, err := os.ReadFile(filepath.Join("testdata", "parquet", "plain_v1_uncompressed.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	damaged := func(name string, f func([]byte) []byte) string {
		return writeBytes(t, dir, name, f(bytes.Clone(good)))
	}
	// The first value of the text column's first page, found by its text.
	valueAt := bytes.Index(good, []byte("plain_v1_uncompressed.parquet row 0:"))
	footer := len(good) - 8 - int(binary.LittleEndian.Uint32(good[len(good)-8:]))
	tests := []struct {
		name string
		src  data.SourceConfig
		want string // a regexp
	}{
		{"no column", data.SourceConfig{Path: types, Column: "body"},
			`types\.parquet: no column "body": its columns are id, text, tags, meta, hash$`},
		{"integers", data.SourceConfig{Path: types, Column: "id"},
			`types\.parquet: column "id" holds INT64 values, not strings \(BYTE_ARRAY\)$`},
		{"fixed length", data.SourceConfig{Path: types, Column: "hash"},
			`types\.parquet: column "hash" holds FIXED_LEN_BYTE_ARRAY values, not strings \(BYTE_ARRAY\)$`},
		{"list", data.SourceConfig{Path: types, Column: "tags"},
			`types\.parquet: column "tags" is a group \(a struct, list or map\), not a string column$`},
		{"all null", data.SourceConfig{Path: filepath.Join("testdata", "parquet", "allnull.parquet")},
			`allnull\.parquet: no documents: column "text" is null or empty in all 4 rows \(1 files\)$`},
		{"not parquet", data.SourceConfig{Path: writeBytes(t, dir, "text.parquet", []byte("just some text, not parquet"))},
			`text\.parquet: not a Parquet file: it does not start with PAR1$`},
		{"truncated", data.SourceConfig{Path: damaged("cut.parquet", func(b []byte) []byte { return b[:len(b)/2] })},
			`cut\.parquet: truncated or corrupt Parquet file: it does not end with PAR1$`},
		{"damaged page", data.SourceConfig{Path: damaged("page.parquet", func(b []byte) []byte {
			b[valueAt] ^= 1
			return b
		})}, `page\.parquet: row group 0: page at byte \d+: corrupt: the page's CRC does not match \(0 of 40 rows read\)$`},
		{"damaged footer", data.SourceConfig{Path: damaged("footer.parquet", func(b []byte) []byte {
			for i := footer; i < footer+8; i++ {
				b[i] = 0xff
			}
			return b
		})}, `footer\.parquet: corrupt Parquet footer: .+`},
		{"empty folder", data.SourceConfig{Path: dir, Include: []string{"*.none"}},
			`: no documents: no non-empty file matches include \["\*\.none"\]$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Type = "parquet"
			_, err := data.OpenCorpus([]data.SourceConfig{tt.src})
			if err == nil {
				t.Fatalf("OpenCorpus succeeded, want an error matching %s", tt.want)
			}
			if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Fatalf("OpenCorpus error\n%v\ndoes not match %s", err, tt.want)
			}
		})
	}
}

// TestParquetChangedFile: a file rewritten after the corpus was opened is an
// error on read, not another document's text.
func TestParquetChangedFile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "parquet", "dict_v2_zstd.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeBytes(t, t.TempDir(), "f.parquet", src)
	c := openParquet(t, data.SourceConfig{Path: path})
	if err := os.WriteFile(path, append(src, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(c.Len() - 1)
	if err == nil || !strings.Contains(err.Error(), "f.parquet[99]") || !strings.Contains(err.Error(), "changed since the corpus was opened") {
		t.Fatalf("Read after a rewrite: %v", err)
	}
}

// TestParquetDamage damages a file a byte at a time: opening and reading it
// may fail, with an error naming the file, but never panics.
func TestParquetDamage(t *testing.T) {
	for _, name := range []string{"dict_v2_zstd.parquet", "delta_v1_snappy.parquet"} {
		good, err := os.ReadFile(filepath.Join("testdata", "parquet", name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		for at := 0; at < len(good); at += 11 {
			b := bytes.Clone(good)
			b[at] ^= 0xa5
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "parquet", Path: path}})
			if err != nil {
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("byte %d: the error does not name the file: %v", at, err)
				}
				continue
			}
			for i := 0; i < c.Len(); i += 10 {
				c.Read(i) // any text, or an error: only no panic
			}
		}
	}
}
