package checkpoint_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
)

// openVerify is what a resume does before trusting a checkpoint.
func openVerify(dir string) error {
	c, err := checkpoint.Open(dir)
	if err != nil {
		return err
	}
	if err := c.Verify(); err != nil {
		return err
	}
	_, _, err = c.Load(dtypes.Float32)
	return err
}

// One changed byte anywhere in any file of a checkpoint is refused, naming the file.
func TestCorruptByteIsNamed(t *testing.T) {
	dir := save(t, t.TempDir(), 10)
	c, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range c.Files() {
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Base(path)
		for _, at := range []int{0, len(orig) / 2, len(orig) - 1} {
			for _, flip := range []byte{0x01, 0xff} {
				t.Run(fmt.Sprintf("%s@%d^%02x", file, at, flip), func(t *testing.T) {
					b := bytes.Clone(orig)
					b[at] ^= flip
					if err := os.WriteFile(path, b, 0o644); err != nil {
						t.Fatal(err)
					}
					defer os.WriteFile(path, orig, 0o644)
					err := openVerify(dir)
					want := fmt.Sprintf("checkpoint %s: %s: ", dir, file)
					if err == nil || !strings.HasPrefix(err.Error(), want) {
						t.Fatalf("err %v, want one starting %q", err, want)
					}
					if file != checkpoint.ManifestFile && !strings.HasSuffix(err.Error(), "(the file is corrupt)") {
						t.Errorf("err %v does not say the file is corrupt", err)
					}
					// Load gives the message Verify gives.
					if c, oerr := checkpoint.Open(dir); oerr == nil {
						_, _, lerr := c.Load(dtypes.Float32)
						if lerr == nil || lerr.Error() != err.Error() {
							t.Errorf("Load: %v, want %v", lerr, err)
						}
					}
				})
			}
		}
	}
	if err := openVerify(dir); err != nil { // every file restored
		t.Fatal(err)
	}
}

// Every value at every byte of manifest.json is caught, including changes that
// leave valid JSON of the same meaning (a space turned into a tab).
func TestManifestEveryByte(t *testing.T) {
	dir := save(t, t.TempDir(), 10)
	orig, err := os.ReadFile(filepath.Join(dir, checkpoint.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.ParseManifest(orig); err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(orig)
	for i := range b {
		for v := range 256 {
			if byte(v) == orig[i] {
				continue
			}
			b[i] = byte(v)
			if _, err := checkpoint.ParseManifest(b); err == nil || !strings.HasPrefix(err.Error(), "manifest.json: ") {
				t.Fatalf("byte %d (%q) set to %q: err %v", i, orig[i], byte(v), err)
			}
		}
		b[i] = orig[i]
	}
	for _, n := range []int{0, 1, len(orig) / 2, len(orig) - 1} { // truncated
		if _, err := checkpoint.ParseManifest(orig[:n]); err == nil || !strings.Contains(err.Error(), "does not end with") {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
}

// Manifests that are well sealed but say something wrong are refused by Open, naming
// the folder and the file, never with a panic.
func TestMalformedManifest(t *testing.T) {
	template := save(t, t.TempDir(), 10)
	c, err := checkpoint.Open(template)
	if err != nil {
		t.Fatal(err)
	}
	good := c.Manifest
	raw, err := checkpoint.MarshalManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	body := unsealed(t, raw)
	edit := func(f func(m *checkpoint.Manifest)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			m := good
			m.Files = append([]checkpoint.FileEntry(nil), good.Files...)
			f(&m)
			writeManifest(t, dir, m)
		}
	}
	path := func(p string) func(*testing.T, string) {
		return edit(func(m *checkpoint.Manifest) { m.Files[0].Path = p })
	}
	text := func(old, new string) func(*testing.T, string) { // an edit of the JSON text, resealed
		return func(t *testing.T, dir string) {
			b := bytes.Replace(body, []byte(old), []byte(new), 1)
			if bytes.Equal(b, body) {
				t.Fatalf("%q not in the manifest", old)
			}
			if err := os.WriteFile(filepath.Join(dir, checkpoint.ManifestFile), reseal(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	file := func(name string, contents []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), contents, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  string // after "checkpoint DIR: "
	}{
		{"format", edit(func(m *checkpoint.Manifest) { m.Format = "torus-checkpoint-v0" }),
			`manifest.json: format "torus-checkpoint-v0", want "torus-checkpoint-v1"`},
		{"step of another folder", edit(func(m *checkpoint.Manifest) { m.Step = 11 }),
			"manifest.json: step 11, but the folder is named for step 10"},
		{"negative step", edit(func(m *checkpoint.Manifest) { m.Step = -1 }), "manifest.json: step -1 is negative"},
		{"negative tokens", edit(func(m *checkpoint.Manifest) { m.TokensSeen = -1 }), "manifest.json: tokens_seen -1 is negative"},
		{"created", edit(func(m *checkpoint.Manifest) { m.Created = "yesterday" }), `manifest.json: created "yesterday" is not an RFC 3339 time`},
		{"parent", path("../x"), `manifest.json: files[0]: path "../x" is not a plain file name`},
		{"absolute", path("/etc/passwd"), `manifest.json: files[0]: path "/etc/passwd" is not a plain file name`},
		{"subfolder", path("a/b"), `manifest.json: files[0]: path "a/b" is not a plain file name`},
		{"backslash", path(`a\b`), `manifest.json: files[0]: path "a\\b" is not a plain file name`},
		{"dot dot", path(".."), `manifest.json: files[0]: path ".." is not a file name`},
		{"empty path", path(""), `manifest.json: files[0]: path "" is empty`},
		{"manifest listed", path("manifest.json"), `manifest.json: files[0]: path "manifest.json" is the manifest itself`},
		{"duplicate", edit(func(m *checkpoint.Manifest) { m.Files = append(m.Files, m.Files[1]) }),
			"manifest.json: files[3]: model.safetensors is listed twice"},
		{"config not listed", edit(func(m *checkpoint.Manifest) { m.Files = m.Files[1:] }), "manifest.json: files does not list config.json"},
		{"no files", edit(func(m *checkpoint.Manifest) { m.Files = nil }), "manifest.json: files does not list config.json"},
		{"bad crc", edit(func(m *checkpoint.Manifest) { m.Files[1].CRC32C = "xyz" }),
			`manifest.json: files[1]: model.safetensors: crc32c "xyz" is not 8 lowercase hex digits`},
		{"upper-case crc", edit(func(m *checkpoint.Manifest) { m.Files[1].CRC32C = "ABCDEF01" }), `manifest.json: files[1]: model.safetensors: crc32c "ABCDEF01" is not 8 lowercase hex digits`},
		{"negative size", edit(func(m *checkpoint.Manifest) { m.Files[1].Bytes = -1 }), "manifest.json: files[1]: model.safetensors: bytes -1 is negative"},
		{"wrong size", edit(func(m *checkpoint.Manifest) { m.Files[1].Bytes++ }), "model.safetensors: size SIZE, manifest says SIZE+1"},
		{"missing file", edit(func(m *checkpoint.Manifest) {
			m.Files = append(m.Files, checkpoint.FileEntry{Path: "zz.bin", Bytes: 1, CRC32C: "00000000"})
		}),
			"zz.bin: missing (manifest.json lists it)"},
		{"file deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, checkpoint.OptimFile(0))) },
			"optim-rank-00.safetensors: missing (manifest.json lists it)"},
		{"not a regular file", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, checkpoint.ConfigFile))
			os.Mkdir(filepath.Join(dir, checkpoint.ConfigFile), 0o755)
		}, "config.json: not a regular file"},
		{"unknown field", text(`"format"`, `"extra": 1, "format"`), `manifest.json: json: unknown field "extra"`},
		{"two objects", func(t *testing.T, dir string) { text("{", "{}{")(t, dir) }, "manifest.json: data after the JSON object"},
		{"not JSON", text(`"format": "`, `"format": {`), "manifest.json: invalid character"},
		{"unsealed", file(checkpoint.ManifestFile, body), `manifest.json: does not end with its "manifest_crc32c" field`},
		{"empty", file(checkpoint.ManifestFile, nil), `manifest.json: does not end with its "manifest_crc32c" field`},
		{"no manifest", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, checkpoint.ManifestFile)) },
			"manifest.json: missing (not a checkpoint, or one not complete)"},
		{"huge", file(checkpoint.ManifestFile, bytes.Repeat([]byte(" "), 17<<20)), "manifest.json: 17825792 bytes, over the 16 MiB limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "step-000010")
			copyDir(t, template, dir)
			c.spoil(t, dir)
			_, err := checkpoint.Open(dir)
			fi, _ := os.Stat(filepath.Join(dir, checkpoint.ModelFile))
			want := fmt.Sprintf("checkpoint %s: %s", dir, c.want)
			if fi != nil {
				want = strings.ReplaceAll(want, "SIZE+1", fmt.Sprint(fi.Size()+1))
				want = strings.ReplaceAll(want, "SIZE", fmt.Sprint(fi.Size()))
			}
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err %v\nwant %s", err, want)
			}
		})
	}
}

// A model file whose header claims an absurd size, listed with its true checksum
// (so Verify passes), is refused by Load with the model reader's message.
func TestLoadRefusesAbsurdHeader(t *testing.T) {
	dir := save(t, t.TempDir(), 10)
	path := filepath.Join(dir, checkpoint.ModelFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b, 1<<62)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range c.Manifest.Files {
		if f.Path == checkpoint.ModelFile {
			c.Manifest.Files[i].CRC32C = crcOf(b)
		}
	}
	writeManifest(t, dir, c.Manifest)
	if c, err = checkpoint.Open(dir); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Load(dtypes.Float32)
	want := fmt.Sprintf("checkpoint %s: model: %s: header length %d is over", dir, path, uint64(1<<62))
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err %v\nwant %s", err, want)
	}
}
