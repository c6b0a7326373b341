package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/torusml/torus/tokenizer"
)

// TokenizerFiles are the files of a Hugging Face model folder that make up its
// tokenizer, as AutoTokenizer reads them; a run keeps them in its checkpoints
// and its final model so that those load with their tokenizer.
var TokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}

// FileTokenizer is a tokenizer read from files that a model folder should
// carry (TokenizerFiles), by name.
type FileTokenizer interface {
	Files() map[string][]byte
}

// hfTokenizer is a Hugging Face tokenizer as the loader uses one: BOS (and EOS
// where the files say) around every document, and a fingerprint of its files
// for the token cache.
type hfTokenizer struct {
	*tokenizer.Tokenizer
	files map[string][]byte
	fp    string
}

// hfAlgorithm goes into every fingerprint: a change to how package tokenizer
// encodes makes it a different tokenizer for the cache.
const hfAlgorithm = "torus/tokenizer 1"

// loadHF loads the tokenizer.json at path, or in the model folder path.
func loadHF(path string) (*hfTokenizer, error) {
	t, err := tokenizer.Load(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err) // "tokenizer: FILE: ..."
	}
	dir, jsonPath := path, filepath.Join(path, TokenizerFiles[0])
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() { // the file itself, whatever its name
		dir, jsonPath = filepath.Dir(path), path
	}
	h := &hfTokenizer{Tokenizer: t, files: map[string][]byte{}}
	sum := sha256.New()
	sum.Write([]byte(hfAlgorithm))
	for _, name := range TokenizerFiles {
		p := filepath.Join(dir, name)
		if name == TokenizerFiles[0] {
			p = jsonPath
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && name != TokenizerFiles[0] {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("data: tokenizer: %w", err)
		}
		h.files[name] = b
		fmt.Fprintf(sum, "\x00%s\x00%d\x00", name, len(b))
		sum.Write(b)
	}
	h.fp = hex.EncodeToString(sum.Sum(nil))
	return h, nil
}

func (h *hfTokenizer) Fingerprint() string      { return h.fp }
func (h *hfTokenizer) Files() map[string][]byte { return h.files }
