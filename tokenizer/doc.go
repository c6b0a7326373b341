// Package tokenizer owns the text-to-ids step of torus for Hugging Face models:
// it loads a tokenizer.json (and tokenizer_config.json) and encodes and decodes
// exactly as Hugging Face's tokenizers library does, for BPE models in both
// their byte-level (GPT-2, Llama 3, Qwen2) and SentencePiece-style (Llama 2,
// Mistral) forms. It imports no other torus package.
//
//	tok, err := tokenizer.Load("models/Llama-3-8B") // or .../tokenizer.json
//	if err != nil {
//		return err
//	}
//	ids := tok.EncodeSpecial([]byte("Hello world")) // [128000 9906 1917]
//	text := tok.Decode(ids)                         // "<|begin_of_text|>Hello world"
//
// The pipeline is Hugging Face's: added tokens are cut out of the raw text
// (added.go), the rest is normalized (normalize.go), pre-tokenized into words
// (pretokenize.go, pattern.go) and each word merged by the BPE model (bpe.go);
// the post-processor's special tokens go around the result (load.go). Decoding
// runs the decoder chain (decode.go). The tests compare every step's result
// with Hugging Face's own JavaScript tokenizers on thousands of strings.
//
// A Tokenizer never changes after Load, so all its methods are safe for
// concurrent use.
package tokenizer
