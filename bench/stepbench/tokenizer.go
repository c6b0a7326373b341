package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/torusml/torus/data"
)

// tokenizerBenchBytes is how much Go source the tokenizer benchmark encodes.
const tokenizerBenchBytes = 16 << 20

// runTokenizer measures the tokenizer's throughput on Go source ($GOROOT/src's
// files, in order, up to tokenizerBenchBytes), on one core: one goroutine,
// GOMAXPROCS 1, each file encoded whole as the loader does. It prints one JSON
// line with MB/s and tokens per byte.
func runTokenizer(name string) error {
	tok, err := data.NewTokenizer(name)
	if err != nil {
		return err
	}
	corpus, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_dir", Path: "$GOROOT/src", Include: []string{"*.go"}, Exclude: []string{"testdata"}}})
	if err != nil {
		return err
	}
	var docs [][]byte
	size := 0
	for i := 0; i < corpus.Len() && size < tokenizerBenchBytes; i++ {
		text, err := corpus.Read(i)
		if err != nil {
			return err
		}
		docs, size = append(docs, text), size+len(text)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	tok.Encode(docs[0]) // first-use costs (tables, caches) are not throughput
	tokens := 0
	start := time.Now()
	for _, d := range docs {
		tokens += len(tok.Encode(d))
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "stepbench: tokenizer %s: %d files, %.1f MB of Go source in %.2f s on one core: %.2f MB/s, %.3f tokens per byte\n",
		name, len(docs), float64(size)/1e6, secs, float64(size)/1e6/secs, float64(tokens)/float64(size))
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"impl": "torus-tokenizer", "tokenizer": name, "files": len(docs), "bytes": size, "tokens": tokens,
		"seconds": secs, "mb_per_s": float64(size) / 1e6 / secs, "tokens_per_byte": float64(tokens) / float64(size), "status": "ok",
	})
}
