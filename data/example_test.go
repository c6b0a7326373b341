package data_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/torusml/torus/data"
)

func Example() {
	dir, err := os.MkdirTemp("", "data-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "docs.jsonl")
	lines := `{"text":"abc"}` + "\n" + `{"text":"defgh"}` + "\n" + `{"text":"ij"}` + "\n"
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		panic(err)
	}

	corpus, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: path}})
	if err != nil {
		panic(err)
	}
	tok, err := data.NewTokenizer("byte")
	if err != nil {
		panic(err)
	}
	loader, err := data.NewLoader(corpus, tok, data.LoaderConfig{SeqLen: 4})
	if err != nil {
		panic(err)
	}
	for range 3 {
		b, err := loader.Next()
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s -> %s doc %v pos %v weight %v\n", tok.Decode(b.Tokens), tok.Decode(b.Targets), b.Doc, b.Pos, b.Weight)
	}
	fmt.Printf("cursor %+v\n", loader.Cursor())
	// Output:
	// abcd -> bcde doc [0 0 0 1] pos [0 1 2 0] weight [1 1 0 1]
	// efgh -> fghi doc [0 0 0 0] pos [0 1 2 3] weight [1 1 1 0]
	// ijab -> jabc doc [0 0 1 1] pos [0 1 0 1] weight [1 0 1 1]
	// cursor {Epoch:1 Doc:0 Offset:2}
}
