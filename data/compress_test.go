package data_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/torusml/torus/data"
)

// jsonlText is a JSON Lines file of n documents, some long, with blank lines
// between some, in all several hundred kilobytes: more than one frame of the
// decompressed copy.
func jsonlText(t *testing.T, n int) (text string, docs []string) {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		doc := fmt.Sprintf("document %d: %s", i, strings.Repeat(strconv.Itoa(i%10), (i*7919)%5000))
		line, err := json.Marshal(map[string]string{"text": doc})
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(line)
		sb.WriteByte('\n')
		if i%13 == 0 {
			sb.WriteString("\n")
		}
		docs = append(docs, doc)
	}
	return sb.String(), docs
}

func gzipped(t *testing.T, parts ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts { // several parts: a multi-member file, as cat a.gz b.gz makes
		w := gzip.NewWriter(&b)
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func zstded(t *testing.T, s string) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll([]byte(s), nil)
}

func writeBytes(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCompressedJSONL reads the same documents from a plain, a gzip (two
// members), and a zstd file: the same texts, named by line, in any order.
func TestCompressedJSONL(t *testing.T) {
	text, docs := jsonlText(t, 400)
	dir := t.TempDir()
	half := strings.Index(text[len(text)/2:], "\n") + len(text)/2 + 1
	files := map[string]string{
		"plain": writeBytes(t, dir, "docs.jsonl", []byte(text)),
		"gzip":  writeBytes(t, dir, "docs.jsonl.gz", gzipped(t, text[:half], text[half:])),
		"zstd":  writeBytes(t, dir, "docs.jsonl.zst", zstded(t, text)),
	}
	plain, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: files["plain"]}})
	if err != nil {
		t.Fatal(err)
	}
	wantNames, _ := readAll(t, plain)
	for codec, path := range files {
		t.Run(codec, func(t *testing.T) {
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: path}})
			if err != nil {
				t.Fatal(err)
			}
			if c.Len() != len(docs) {
				t.Fatalf("%d documents, want %d", c.Len(), len(docs))
			}
			for i := c.Len() - 1; i >= 0; i-- { // backwards: every read finds its own frame
				got, err := c.Read(i)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != docs[i] {
					t.Fatalf("document %d: %.40q..., want %.40q...", i, got, docs[i])
				}
				if name, want := c.Doc(i).Name, strings.Replace(wantNames[i], files["plain"], path, 1); name != want {
					t.Fatalf("document %d is named %s, want %s", i, name, want)
				}
			}
		})
	}
}

// TestCompressedSFT: an sft source reads from a compressed file, with the
// fixed template and with a chat template.
func TestCompressedSFT(t *testing.T) {
	records := oneTurn + "\n" + twoTurns + "\n"
	dir := t.TempDir()
	for _, tmpl := range []data.ChatTemplate{{}, qwen2} {
		plain, err := data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: writeBytes(t, dir, "c.jsonl", []byte(records)), ChatTemplate: tmpl}})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{writeBytes(t, dir, "c.jsonl.gz", gzipped(t, records)), writeBytes(t, dir, "c.jsonl.zst", zstded(t, records))} {
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "sft", Path: path, ChatTemplate: tmpl}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range plain.Len() {
				want, _ := plain.ReadSpans(i)
				got, err := c.ReadSpans(i)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s document %d: spans %v, want %v", filepath.Base(path), i, got, want)
				}
			}
		}
	}
}

// TestCompressedErrors: damaged compressed data fails at open with the file
// and the line where decoding broke.
func TestCompressedErrors(t *testing.T) {
	text, _ := jsonlText(t, 400)
	gz, zs := gzipped(t, text), zstded(t, text)
	flip := func(b []byte, at, n int) []byte {
		b = bytes.Clone(b)
		for i := at; i < at+n; i++ {
			b[i] ^= 0x5a
		}
		return b
	}
	tests := []struct {
		name string
		file string
		data []byte
		want string // a regexp
	}{
		{"truncated gzip", "a.jsonl.gz", gz[:len(gz)*2/3], `a\.jsonl\.gz:(\d+): truncated gzip data: the file ends inside a compressed stream$`},
		// gzip checks its CRC at the end: damage may first show as a bad line.
		{"corrupt gzip", "a.jsonl.gz", flip(gz, len(gz)/2, 16), `a\.jsonl\.gz:(\d+): (corrupt gzip data|invalid JSON): .+`},
		{"gzip checksum", "a.jsonl.gz", flip(gz, len(gz)-8, 4), `a\.jsonl\.gz:(\d+): corrupt gzip data: gzip: invalid checksum$`},
		{"not gzip", "a.jsonl.gz", []byte(text), `a\.jsonl\.gz: not gzip data: gzip: invalid header$`},
		{"truncated zstd", "a.jsonl.zst", zs[:len(zs)*2/3], `a\.jsonl\.zst:(\d+): (truncated|corrupt) zstd data`},
		{"corrupt zstd", "a.jsonl.zst", flip(zs, len(zs)/2, 16), `a\.jsonl\.zst:(\d+): corrupt zstd data: .+`},
		{"not zstd", "a.jsonl.zst", []byte(text), `a\.jsonl\.zst:1: not zstd data: `},
		{"bad line inside", "a.jsonl.zst", zstded(t, "{\"text\": \"a\"}\n\n{\"text\": 3}\n"), `a\.jsonl\.zst:3: field "text" is not a string: 3$`},
		{"empty stream", "a.jsonl.gz", gzipped(t, ""), `a\.jsonl\.gz: empty file \(nothing after gzip decompression\)$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeBytes(t, t.TempDir(), tt.file, tt.data)
			_, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: path}})
			if err == nil {
				t.Fatalf("OpenCorpus succeeded, want an error matching %s", tt.want)
			}
			m := regexp.MustCompile(tt.want).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("OpenCorpus error\n%v\ndoes not match %s", err, tt.want)
			}
			if len(m) > 1 && m[1] != "" { // damage past the start: a line well into the file
				if line, _ := strconv.Atoi(m[1]); line < 50 {
					t.Errorf("error at line %d, want one near where the damage is: %v", line, err)
				}
			}
		})
	}
}
