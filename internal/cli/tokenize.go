package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/data"
)

func newTokenizeCmd() *cobra.Command {
	var special, decode bool
	cmd := &cobra.Command{
		Use:   "tokenize TOKENIZER",
		Short: "Token ids of the text on stdin, as one JSON array; or, with --decode, the text of ids",
		Long: `Encode the text read from stdin and print its token ids as one JSON array.
TOKENIZER is a Hugging Face tokenizer.json, a model folder holding one (with
its tokenizer_config.json), or "byte" (each byte is its own id; a folder named
byte is ./byte).

--special adds the special tokens that the tokenizer puts around a text (the
BOS of Llama models), as Hugging Face's add_special_tokens=True.
--decode reads a JSON array of ids from stdin and prints their text instead;
an id outside the vocabulary is an error.`,
		Example: `  echo -n 'Hello world' | torus tokenize models/Llama-3-8B --special
  echo '[9906, 1917]' | torus tokenize models/Llama-3-8B --decode`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenize(cmd.InOrStdin(), cmd.OutOrStdout(), args[0], special, decode)
		},
	}
	cmd.Flags().BoolVar(&special, "special", false, "add the special tokens around the text (BOS, EOS) as the tokenizer does")
	cmd.Flags().BoolVar(&decode, "decode", false, "read a JSON array of ids and print their text")
	cmd.MarkFlagsMutuallyExclusive("special", "decode")
	return cmd
}

func runTokenize(stdin io.Reader, stdout io.Writer, name string, special, decode bool) error {
	tok, err := data.NewTokenizer(name)
	if err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	in, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("tokenize: reading stdin: %w", err)
	}
	if decode {
		ids, err := readIDs(in, tok)
		if err != nil {
			return fmt.Errorf("tokenize --decode: %w", err)
		}
		_, err = stdout.Write(tok.Decode(ids))
		return err
	}
	ids := tok.Encode(in)
	if sp, ok := tok.(interface{ EncodeSpecial([]byte) []int32 }); ok && special { // bytes have none
		ids = sp.EncodeSpecial(in)
	}
	out, err := json.Marshal(append([]int32{}, ids...)) // [] rather than null for no ids
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

// readIDs reads a JSON array of ids, each of which must have a token.
func readIDs(in []byte, tok data.Tokenizer) ([]int32, error) {
	var raw []int64
	if err := json.Unmarshal(in, &raw); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("stdin is not JSON: %v (at byte %d)", syn, max(syn.Offset-1, 0))
		case errors.As(err, &typ):
			return nil, fmt.Errorf("stdin is not a JSON array of integer ids: a JSON %s at byte %d", typ.Value, typ.Offset)
		}
		return nil, fmt.Errorf("stdin is not a JSON array of ids: %v", err)
	}
	ids := make([]int32, len(raw))
	for i, id := range raw {
		if id < 0 || id >= int64(tok.VocabSize()) {
			return nil, fmt.Errorf("id %d (at index %d) is outside the vocabulary of %d tokens", id, i, tok.VocabSize())
		}
		if t, ok := tok.(interface{ Token(int32) (string, bool) }); ok && !hasToken(t, int32(id)) {
			return nil, fmt.Errorf("id %d (at index %d) has no token in the vocabulary of %d", id, i, tok.VocabSize())
		}
		ids[i] = int32(id)
	}
	return ids, nil
}

func hasToken(t interface{ Token(int32) (string, bool) }, id int32) bool {
	_, ok := t.Token(id)
	return ok
}
