// Command parquetgen writes the Parquet files of data/testdata/parquet with
// parquet-go's writer, an implementation independent of torus's reader, so
// that the tests check the reader against files it did not make. torus itself
// needs only parquet-go's metadata packages, so go.mod lacks what the writer
// needs; run it with a copy of go.mod, from the repository root:
//
//	cp go.mod /tmp/gen.mod && cp go.sum /tmp/gen.sum
//	go run -modfile=/tmp/gen.mod -mod=mod ./data/testdata/parquetgen
//
// The output is the same on every run. Row i of a file is
// parquetRowText(name, i) of data/parquet_test.go: null when i%7 == 3, empty
// when i%11 == 5.
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

const dir = "data/testdata/parquet"

// text is the value of row i of the file named name; ok is false for null.
func text(name string, i int) (s string, ok bool) {
	switch {
	case i%7 == 3:
		return "", false
	case i%11 == 5:
		return "", true
	}
	words := []string{"alpha", "beta", "gamma", "delta"}
	return fmt.Sprintf("%s row %d: %s", name, i, strings.Repeat(words[i%4]+" ", 1+i%5)), true
}

type optionalRow struct {
	ID   int64   `parquet:"id"`
	Text *string `parquet:"text,optional"`
}

type requiredRow struct {
	Text string `parquet:"text"`
}

type typesRow struct {
	ID   int64    `parquet:"id"`
	Text *string  `parquet:"text,optional"`
	Tags []string `parquet:"tags,list"`
	Meta struct {
		Source string `parquet:"source"`
	} `parquet:"meta"`
	Hash [4]byte `parquet:"hash"`
}

func write[T any](name string, rows []T, opts ...parquet.WriterOption) {
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	for len(rows) > 0 { // a few rows a call: the writer cuts a page only between calls
		k := min(3, len(rows))
		if _, err := w.Write(rows[:k]); err != nil {
			log.Fatal(err)
		}
		rows = rows[k:]
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func optional(name string, n int) []optionalRow {
	rows := make([]optionalRow, n)
	for i := range rows {
		rows[i].ID = int64(i)
		if s, ok := text(name, i); ok {
			rows[i].Text = &s
		}
	}
	return rows
}

func main() {
	dict := parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.RLEDictionary)
	small := []parquet.WriterOption{parquet.PageBufferSize(512), parquet.MaxRowsPerRowGroup(40)}
	for _, f := range []struct {
		name    string
		codec   compress.Codec
		version int
		dict    bool
	}{
		{"plain_v1_uncompressed.parquet", &parquet.Uncompressed, 1, false},
		{"delta_v1_snappy.parquet", &parquet.Snappy, 1, false},
		{"dict_v1_snappy.parquet", &parquet.Snappy, 1, true},
		{"dict_v2_zstd.parquet", &parquet.Zstd, 2, true},
		{"plain_v2_gzip.parquet", &parquet.Gzip, 2, false},
		{"plain_v1_lz4raw.parquet", &parquet.Lz4Raw, 1, false},
		{"dict_v2_brotli.parquet", &parquet.Brotli, 2, true},
	} {
		opts := append([]parquet.WriterOption{parquet.Compression(f.codec), parquet.DataPageVersion(f.version)}, small...)
		switch {
		case strings.HasPrefix(f.name, "plain"):
			opts = append(opts, parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.Plain))
		case strings.HasPrefix(f.name, "delta"):
			opts = append(opts, parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.DeltaByteArray))
		}
		if f.dict {
			// A small dictionary: like pyarrow, the writer falls back to
			// PLAIN pages once it is full, so one chunk has both.
			// Pages of a few indices each (their buffer holds indices).
			opts = append(opts, dict, parquet.DictionaryMaxBytes(300), parquet.PageBufferSize(40))
		}
		write(f.name, optional(f.name, 100), opts...)
	}

	req := make([]requiredRow, 30)
	for i := range req {
		req[i].Text, _ = text("required.parquet", i)
	}
	write("required.parquet", req, parquet.Compression(&parquet.Snappy))

	types := make([]typesRow, 5)
	for i := range types {
		s, _ := text("types.parquet", i)
		types[i] = typesRow{ID: int64(i), Text: &s, Tags: []string{"a", "b"}}
		types[i].Meta.Source = "web"
	}
	write("types.parquet", types) // parquet-go's default for strings: DELTA_LENGTH_BYTE_ARRAY

	write("allnull.parquet", make([]optionalRow, 4))

	// The layout of a Hugging Face dataset: two train shards and a test one.
	for _, name := range []string{"hf/data/train-00000-of-00002.parquet", "hf/data/train-00001-of-00002.parquet", "hf/data/test-00000-of-00001.parquet"} {
		write(name, optional(filepath.Base(name), 20), parquet.Compression(&parquet.Snappy), parquet.MaxRowsPerRowGroup(8))
	}
}
