package data_test

import (
	"encoding/json"
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
	state, err := json.Marshal(loader.Cursor()) // what a checkpoint stores
	if err != nil {
		panic(err)
	}
	fmt.Printf("cursor %s\n", state)
	// Output:
	// abcd -> bcde doc [0 0 0 1] pos [0 1 2 0] weight [1 1 0 1]
	// efgh -> fghi doc [0 0 0 0] pos [0 1 2 3] weight [1 1 1 0]
	// ijab -> jabc doc [0 0 1 1] pos [0 1 0 1] weight [1 0 1 1]
	// cursor {"epoch":1,"doc":0,"offset":2}
}

// Two lanes read "abc", "ij" and "defgh", "klm" side by side; the package doc
// draws the same run.
func Example_lanes() {
	dir, err := os.MkdirTemp("", "data-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "docs.jsonl")
	lines := `{"text":"abc"}` + "\n" + `{"text":"defgh"}` + "\n" + `{"text":"ij"}` + "\n" + `{"text":"klm"}` + "\n"
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		panic(err)
	}

	corpus, err := data.OpenCorpus([]data.SourceConfig{{Type: "jsonl", Path: path}})
	if err != nil {
		panic(err)
	}
	tok := data.ByteTokenizer{}
	loader, err := data.NewLoader(corpus, tok, data.LoaderConfig{SeqLen: 4, Lanes: 2})
	if err != nil {
		panic(err)
	}
	for range 4 {
		b, err := loader.Next()
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s -> %s doc %v pos %v\n", tok.Decode(b.Tokens), tok.Decode(b.Targets), b.Doc, b.Pos)
	}
	state, err := json.Marshal(loader.Cursor())
	if err != nil {
		panic(err)
	}
	fmt.Printf("cursor %s\n", state)
	// Output:
	// abci -> bcij doc [0 0 0 1] pos [0 1 2 0]
	// defg -> efgh doc [0 0 0 0] pos [0 1 2 3]
	// jabc -> abci doc [0 1 1 1] pos [0 0 1 2]
	// hklm -> klmd doc [0 1 1 1] pos [0 0 1 2]
	// cursor {"epoch":1,"doc":2,"offset":0,"lanes":[{"epoch":1,"doc":2,"offset":0},{"epoch":1,"doc":1,"offset":0}]}
}
