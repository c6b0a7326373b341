// Package data turns text sources into packed, fixed-length training
// sequences for a decoder language model.
//
// It has three parts, one per file group:
//
//   - Tokenizer (tokenizer.go): text to token ids and back. "byte" is the
//     only tokenizer so far: vocabulary 256, id = byte value.
//   - Corpus (corpus.go, textdir.go, jsonl.go, compress.go, sft.go, chat.go,
//     parquet.go, passkey.go, heldout.go, span.go, expand.go): the documents
//     of all sources, listed up front in a fixed order (paths and byte
//     offsets only) and read one at a time, so a 200 MB source tree is never
//     held in memory. Source types: text_file, text_dir, jsonl, sft
//     (conversations rendered with a fixed template, or a model's Jinja chat
//     template, the loss on the responses only; jsonl and sft files may be
//     .gz or .zst), parquet (a row of a string column a document, from a file
//     or a folder of shards) and passkey (synthetic retrieval samples,
//     generated from the seed and the sample index). A
//     text_dir skips hidden directories, testdata, and the directories whose
//     base name matches an Exclude glob (Exclude: ["cmd", "vendor"] drops
//     every cmd and vendor directory at any depth, with everything below it).
//     A document reads as Spans that say which text the loss counts; OpenSplit
//     sets a seeded choice of documents aside for evaluation.
//   - Loader (loader.go, cursor.go, batch.go): packs the token stream of the
//     documents, in a per-epoch shuffled order, into sequences of SeqLen
//     tokens with per-token positions, document ids and loss weights,
//     reading several documents side by side (Lanes). Its Cursor is a small
//     JSON value that a checkpoint stores; Seek resumes from it exactly.
//
// Packing, for SeqLen L = 4 and documents "abc", "defgh", "ij" in that order:
//
//	stream   a b c d e f g h i j a b c ...   (documents back to back, epoch after epoch)
//	seq 0    Tokens a b c d   Targets b c d e   Doc 0 0 0 1   Pos 0 1 2 0   Weight 1 1 0 1
//	seq 1    Tokens e f g h   Targets f g h i   Doc 0 0 0 0   Pos 0 1 2 3   Weight 1 1 1 0
//	seq 2    Tokens i j a b   Targets j a b c   Doc 0 0 1 1   Pos 0 1 0 1   Weight 1 0 1 1
//
// Each sequence consumes L tokens and peeks one more for the last target.
// A document cut at the end of a sequence continues in the next one as a new
// segment whose positions restart at 0. A target is weighted 1 only when it is
// the next token of the same document and the document's loss mask counts it:
// every token of a plain text or passkey document, only the response tokens
// of an sft document (see sft.go and docs/data.md).
//
// Lanes. Packed in order, a long document (a whole Go package, 50-500 KB)
// fills hundreds of consecutive sequences, so that a step's batch and the
// next hundred steps all see one document. With LoaderConfig.Lanes = K > 1,
// each epoch's order is dealt round-robin to K lanes: lane j packs the
// documents at indices j, j+K, j+2K, ... of the order by the rule above, as a
// stream of its own, and then goes on with its share of the next epoch's
// order (each lane passes into its next epoch on its own). Next returns the
// sequences of lanes 0, 1, ..., K-1, 0, 1, ... in turn. For K = 2 and the
// order "abc", "defgh", "ij", "klm" in every epoch, with L = 4:
//
//	lane 0   a b c i j a b c i j ...   ("abc", "ij", then epoch 1's share)
//	lane 1   d e f g h k l m d e ...   ("defgh", "klm", ...)
//	seq 0    lane 0   Tokens a b c i   Doc 0 0 0 1   Pos 0 1 2 0
//	seq 1    lane 1   Tokens d e f g   Doc 0 0 0 0   Pos 0 1 2 3
//	seq 2    lane 0   Tokens j a b c   Doc 0 1 1 1   Pos 0 0 1 2
//	seq 3    lane 1   Tokens h k l m   Doc 0 1 1 1   Pos 0 0 1 2
//
// Lanes 0 or 1 is the single stream above. More lanes than documents means
// one lane per document. The Cursor of a K-lane loader holds every lane's
// position and the lane of the next sequence; a one-lane Cursor is just the
// epoch, doc and offset, and its JSON is the same as before lanes existed.
//
// Example:
//
//	train, held, err := data.OpenSplit([]data.SourceConfig{{
//		Type: "text_dir", Path: "$GOROOT/src",
//		Include: []string{"*.go"}, Exclude: []string{"cmd", "vendor"}, DocPer: "directory",
//	}}, 20, 1) // 20 documents, chosen by seed 1, held out for evaluation
//	if err != nil {
//		return err
//	}
//	tok, _ := data.NewTokenizer("byte")
//	loader, err := data.NewLoader(train, tok, data.LoaderConfig{SeqLen: 256, Shuffle: true, Seed: 1, Lanes: 64})
//	if err != nil {
//		return err
//	}
//	b, err := loader.Next() // b.Tokens, b.Targets, b.Pos, b.Doc, b.Weight: [256]
//	state := loader.Cursor() // store with the checkpoint; loader.Seek(state) continues from here
//
// Corpus and Tokenizer values are safe for concurrent use; a Loader is not.
package data
