package checkpoint_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
)

func TestRoundTrip(t *testing.T) {
	ckpt := filepath.Join(t.TempDir(), "run", "ckpt") // Save creates it
	s := snapshot(t, tinyConfig, 100)
	before := time.Now().UTC().Add(-time.Second)
	dir, err := checkpoint.Save(ckpt, s)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(ckpt, "step-000100"); dir != want {
		t.Fatalf("Save = %s, want %s", dir, want)
	}
	if got, err := os.ReadFile(filepath.Join(ckpt, checkpoint.LatestFile)); err != nil || string(got) != "step-000100\n" {
		t.Fatalf("latest = %q, %v", got, err)
	}
	if latest, err := checkpoint.Latest(ckpt); err != nil || latest != dir {
		t.Fatalf("Latest = %s, %v; want %s", latest, err, dir)
	}
	entries, _ := os.ReadDir(ckpt)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("leftover %s", e.Name())
		}
	}

	c, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Manifest
	created, err := time.Parse(time.RFC3339, m.Created)
	if err != nil || created.Before(before) || created.After(time.Now().Add(time.Second)) || !strings.HasSuffix(m.Created, "Z") {
		t.Errorf("created %q (%v)", m.Created, err)
	}
	want := checkpoint.Manifest{
		Format: checkpoint.Format, Step: 100, TokensSeen: s.TokensSeen, RecipeHash: s.RecipeHash, World: s.World,
		Optim: s.OptimMeta, Created: m.Created, Cursor: m.Cursor, RNG: m.RNG, Files: m.Files,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("manifest\n%+v\nwant\n%+v", m, want)
	}
	for _, raw := range []struct{ got, want json.RawMessage }{{m.Cursor, s.Cursor}, {m.RNG, s.RNG}} {
		var a, b any
		if json.Unmarshal(raw.got, &a) != nil || json.Unmarshal(raw.want, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("raw JSON %s, want %s", raw.got, raw.want)
		}
	}
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
		fi, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil || fi.Size() != f.Bytes || len(f.CRC32C) != 8 {
			t.Errorf("%+v: %v", f, err)
		}
	}
	if want := []string{"config.json", "model.safetensors", "optim-rank-00.safetensors"}; !slices.Equal(paths, want) {
		t.Errorf("files %v, want %v", paths, want)
	}
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}

	p, opt, err := c.Load(dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if p.Config != s.Params.Config {
		t.Errorf("config %+v, want %+v", p.Config, s.Params.Config)
	}
	if len(p.T) != len(s.Params.T) || len(opt) != len(s.Optim) {
		t.Fatalf("%d params, %d optimizer tensors; want %d, %d", len(p.T), len(opt), len(s.Params.T), len(s.Optim))
	}
	for name, want := range s.Params.T {
		sameBits(t, name, p.T[name], want)
	}
	for key, want := range s.Optim {
		sameBits(t, key, opt[key], want)
	}
}

func TestSaveWithoutOptimizer(t *testing.T) {
	s := snapshot(t, tinyConfig, 5)
	s.Optim = nil
	dir, err := checkpoint.Save(t.TempDir(), s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, opt, err := c.Load(dtypes.Float64)
	if err != nil || opt != nil {
		t.Fatalf("optimizer state %v, %v; want nil, nil", opt, err)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpoint.OptimFile(0))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("optimizer file written: %v", err)
	}
}

func TestSaveRefusals(t *testing.T) {
	ckpt := t.TempDir()
	save(t, ckpt, 10)
	noParams := snapshot(t, tinyConfig, 20)
	noParams.Params = nil
	badShape := snapshot(t, tinyConfig, 30)
	badShape.Params.T["model.norm.weight"] = badShape.Params.T["model.embed_tokens.weight"]
	badCursor := snapshot(t, tinyConfig, 40)
	badCursor.Cursor = []byte("{not json")
	for _, c := range []struct {
		name string
		s    *checkpoint.Snapshot
		want string
	}{
		{"exists", snapshot(t, tinyConfig, 10), "checkpoint: save step 10: " + filepath.Join(ckpt, "step-000010") + " already exists"},
		{"no params", noParams, "save step 20: no model parameters"},
		{"shape", badShape, `parameter "model.norm.weight" has shape [64 32], the config wants [32]`},
		{"cursor", badCursor, "data cursor is not valid JSON"},
		{"negative step", snapshot(t, tinyConfig, -1), "step -1 is negative"},
		{"nil", nil, "no snapshot"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := checkpoint.Save(ckpt, c.s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	if latest, err := checkpoint.Latest(ckpt); err != nil || filepath.Base(latest) != "step-000010" {
		t.Errorf("Latest = %s, %v after refused saves", latest, err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(ckpt, "*.tmp")); len(tmps) > 0 {
		t.Errorf("leftovers %v", tmps)
	}
}

// A leftover step-N.tmp (a crash mid-write) is replaced, not merged.
func TestSaveReplacesLeftoverTmp(t *testing.T) {
	ckpt := t.TempDir()
	tmp := filepath.Join(ckpt, "step-000007.tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "stale.bin"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := save(t, ckpt, 7)
	if _, err := os.Stat(filepath.Join(dir, "stale.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale file carried over: %v", err)
	}
}

// An error while writing removes the .tmp folder and names the path.
func TestSaveErrorRemovesTmp(t *testing.T) {
	ckpt := t.TempDir()
	s := snapshot(t, tinyConfig, 3)
	s.OptimMeta = map[string]string{"bad": "\xff"} // safetensors.WriteTo refuses non-UTF-8 metadata, after model.safetensors
	_, err := checkpoint.Save(ckpt, s)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(ckpt, "step-000003.tmp", checkpoint.OptimFile(0))) {
		t.Fatalf("err %v, want one naming the optimizer file", err)
	}
	if entries, _ := os.ReadDir(ckpt); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

func TestLatest(t *testing.T) {
	for _, c := range []struct {
		name, latest string // latest "": no file
		want         string // error text; "" for success
	}{
		{"no file", "", "checkpoint: no checkpoint in DIR: no latest file"},
		{"ok", "step-000010\n", ""},
		{"no newline", "step-000010", ""},
		{"big step", "step-1234567\n", ""},
		{"short", "step-10\n", `"step-10" is not a checkpoint name`},
		{"parent", "../step-000010\n", `"../step-000010" is not a checkpoint name`},
		{"slash", "step-000010/x\n", "is not a checkpoint name"},
		{"absolute", "/etc\n", "is not a checkpoint name"},
		{"empty", "\n", `"" is not a checkpoint name`},
		{"missing folder", "step-000011\n", "latest names step-000011, which is not a folder there"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ckpt := t.TempDir()
			for _, d := range []string{"step-000010", "step-1234567"} {
				if err := os.Mkdir(filepath.Join(ckpt, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if c.latest != "" {
				if err := os.WriteFile(filepath.Join(ckpt, checkpoint.LatestFile), []byte(c.latest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := checkpoint.Latest(ckpt)
			if c.want == "" {
				if want := filepath.Join(ckpt, strings.TrimSpace(c.latest)); err != nil || got != want {
					t.Fatalf("Latest = %q, %v; want %q", got, err, want)
				}
				return
			}
			want := strings.ReplaceAll(c.want, "DIR", ckpt)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err %v, want %q", err, want)
			}
			if c.latest == "" && !errors.Is(err, checkpoint.ErrNoCheckpoint) {
				t.Errorf("err %v is not ErrNoCheckpoint", err)
			}
		})
	}
}

// A crash after a checkpoint's folder is renamed into place (its commit) but
// before latest is rewritten: the checkpoint is complete and Latest finds it;
// incomplete folders past it are not taken.
func TestLatestAfterCrashBeforeLatest(t *testing.T) {
	ckpt := t.TempDir()
	save(t, ckpt, 5)
	if err := os.Remove(filepath.Join(ckpt, checkpoint.LatestFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ckpt, "step-000020"), 0o755); err != nil { // no manifest
		t.Fatal(err)
	}
	if got, err := checkpoint.Latest(ckpt); err != nil || got != filepath.Join(ckpt, "step-000005") {
		t.Fatalf("no latest file: Latest = %q, %v; want step-000005", got, err)
	}
	save(t, ckpt, 10)
	if err := os.WriteFile(filepath.Join(ckpt, checkpoint.LatestFile), []byte("step-000005\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := checkpoint.Latest(ckpt); err != nil || got != filepath.Join(ckpt, "step-000010") {
		t.Fatalf("latest names step-000005: Latest = %q, %v; want step-000010", got, err)
	}
}

func TestList(t *testing.T) {
	ckpt := t.TempDir()
	if got, err := checkpoint.List(filepath.Join(ckpt, "missing")); err != nil || got != nil {
		t.Fatalf("List of a missing folder = %v, %v", got, err)
	}
	for _, step := range []int{1000000, 20, 3} {
		save(t, ckpt, step)
	}
	for _, d := range []string{"step-000040.tmp", "step-000050", "other"} { // incomplete or not ours
		if err := os.Mkdir(filepath.Join(ckpt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := checkpoint.List(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(infos), []string{"step-000003", "step-000020", "step-1000000"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	in := infos[1]
	var size int64
	for _, f := range []string{"manifest.json", "config.json", "model.safetensors", "optim-rank-00.safetensors"} {
		fi, err := os.Stat(filepath.Join(in.Path, f))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if in.Step != 20 || in.TokensSeen != 20*4096 || in.Bytes != size || in.Path != filepath.Join(ckpt, "step-000020") {
		t.Errorf("info %+v, want step 20, %d tokens, %d bytes", in, 20*4096, size)
	}
}
