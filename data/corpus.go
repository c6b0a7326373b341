package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SourceConfig is one data source; the fields are those of the recipe's
// data.sources entries.
type SourceConfig struct {
	Type    string   // text_file | text_dir | jsonl | sft (sft.go) | parquet (parquet.go) | passkey (passkey.go)
	Path    string   // $VAR and ${VAR} are expanded; $GOROOT falls back to `go env GOROOT`; passkey: unused; jsonl, sft: *.gz and *.zst are decompressed (compress.go)
	Include []string // text_dir, parquet folder: globs on the file's base name (filepath.Match); empty: all files (parquet: *.parquet)
	Exclude []string // text_dir: globs on directory base names skipped, with all below them, at any depth; other types: only checked
	DocPer  string   // text_dir: file (default) | directory (a directory's files, concatenated)
	Field   string   // jsonl: the string field holding the text (default "text")
	Column  string   // parquet: the string column holding the text (default "text")

	// ChatTemplate, for sft: when its Text is set, records are rendered
	// through it (chat.go) rather than with the fixed "### Role:" template.
	// LoadChatTemplate reads one from a model folder, a tokenizer_config.json
	// or a .jinja file.
	ChatTemplate ChatTemplate

	// passkey: Count samples, each of a length (in bytes, so byte-tokenizer
	// tokens) drawn uniformly from [MinLen, MaxLen], where 0 stands for
	// SeqLen (the recipe's data.seq_len). Sample i of source s is a function
	// of Seed (the recipe's seed), s and i only.
	Count          int
	MinLen, MaxLen int
	KeyDigits      int // the key's digits; 0: PasskeyDigits
	SeqLen         int
	Seed           uint64
}

// docKind is how a document's text is read.
type docKind uint8

const (
	kindFile    docKind = iota // the whole file at path
	kindDir                    // files, joined by newlines
	kindLine                   // the JSON line at [off, off+size) of path, field field
	kindSFT                    // the sft record at [off, off+size) of path
	kindPasskey                // a synthetic passkey sample
	kindParquet                // row row of a parquet file, its page pq
)

// DocRef names one document of a Corpus and says where its text is; the text
// itself is read only by Corpus.Read (or a Loader).
type DocRef struct {
	Source int    // index of its source in the slice given to OpenCorpus
	Name   string // file path, directory path ending in "/", "file.jsonl:17", "file.parquet[17]" (row 17 from 0), or "passkey[2]:17" (source 2, sample 17)

	kind  docKind
	path  string        // the file, the directory, or the JSONL file
	files []string      // kindDir: the directory's matching files, sorted
	off   int64         // kindLine, kindSFT: byte offset of the line
	size  int           // kindLine, kindSFT: byte length of the line, without its newline
	line  int           // kindLine, kindSFT: 1-based line number
	field string        // kindLine: the text field
	spill *spill        // kindLine, kindSFT of a compressed file: the copy off indexes; nil: the file itself
	chat  *chatTemplate // kindSFT: the template to render with; nil: the fixed one

	pq  *pqPage // kindParquet: the page holding the row
	row int64   // kindParquet: the row, from 0 in its file

	sample passkeySample // kindPasskey
}

// Corpus is all documents of all sources in a fixed order: the sources in the
// order given, and within a source its documents sorted by path (JSONL: by
// line). It holds only names and offsets. A Corpus is safe for concurrent use.
type Corpus struct {
	docs []DocRef
}

// OpenCorpus lists the documents of srcs and checks each source up front:
// missing paths, unknown types, empty files, text_dir sources with no matching
// file, JSONL lines without a non-empty string field and bad sft records are
// errors that name the path (and line and key). It reads JSONL and sft files
// once to index their lines; it does not read other files. A passkey source
// lists its samples without making them. A parquet source reads its text
// column once, page by page, to index its rows.
func OpenCorpus(srcs []SourceConfig) (*Corpus, error) {
	c := &Corpus{}
	for i, s := range srcs {
		docs, err := openSource(s, i)
		if err != nil {
			return nil, fmt.Errorf("data: source %d (%s): %w", i, s.Type, err)
		}
		for j := range docs {
			docs[j].Source = i
		}
		c.docs = append(c.docs, docs...)
	}
	if len(c.docs) == 0 {
		return nil, errors.New("data: corpus has no documents: no sources given")
	}
	return c, nil
}

// openSource lists the documents of source src. Its errors name the path.
func openSource(s SourceConfig, src int) ([]DocRef, error) {
	if s.Type == "passkey" {
		return listPasskey(s, src)
	}
	path, err := ExpandPath(s.Path)
	if err != nil {
		return nil, err
	}
	for _, g := range s.Exclude { // checked for every type, so that a typo fails whatever the type
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%s: exclude %q: %w", path, g, err)
		}
	}
	for _, g := range s.Include {
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%s: include %q: %w", path, g, err)
		}
	}
	switch s.Type {
	case "text_file":
		return listTextFile(path)
	case "text_dir":
		return listTextDir(path, s.Include, s.Exclude, s.DocPer)
	case "jsonl":
		return listJSONL(path, s.Field)
	case "sft":
		var chat *chatTemplate
		if s.ChatTemplate.Text != "" {
			if chat, err = compileChatTemplate(s.ChatTemplate); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		return listSFT(path, chat)
	case "parquet":
		return listParquet(path, s.Include, s.Column)
	}
	return nil, fmt.Errorf("%s: unknown source type %q (want text_file, text_dir, jsonl, sft, parquet or passkey)", path, s.Type)
}

// listTextFile makes the file at path one document.
func listTextFile(path string) ([]DocRef, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, fmt.Errorf("%s: is a directory (text_file wants a file; use text_dir)", path)
	case fi.Size() == 0:
		return nil, fmt.Errorf("%s: empty file", path)
	}
	return []DocRef{{Name: path, kind: kindFile, path: path}}, nil
}

// Len is the number of documents.
func (c *Corpus) Len() int { return len(c.docs) }

// Doc returns the i-th document's reference; i must be in [0, Len()).
func (c *Corpus) Doc(i int) DocRef { return c.docs[i] }

// Read returns the text of the i-th document: for an sft document the
// rendered conversation, template included.
func (c *Corpus) Read(i int) ([]byte, error) {
	spans, err := c.ReadSpans(i)
	if err != nil {
		return nil, err
	}
	return joinSpans(spans), nil
}

// ReadSpans returns the text of the i-th document as spans that say which
// text the loss counts: one span that counts for every type but sft.
func (c *Corpus) ReadSpans(i int) ([]Span, error) {
	if i < 0 || i >= len(c.docs) {
		return nil, fmt.Errorf("data: read document %d: out of range [0, %d)", i, len(c.docs))
	}
	spans, err := c.docs[i].spans()
	if err != nil {
		return nil, fmt.Errorf("data: read document %d: %w", i, err)
	}
	return spans, nil
}

// spans returns the document's text. Its errors name the path (and line).
func (d *DocRef) spans() ([]Span, error) {
	var text []byte
	var err error
	switch d.kind {
	case kindFile:
		text, err = os.ReadFile(d.path)
	case kindDir:
		text, err = readFiles(d.files)
	case kindLine:
		if text, err = readLine(d); err == nil {
			text, err = d.lineText(text)
		}
	case kindSFT:
		if text, err = readLine(d); err == nil {
			return d.sftSpans(text)
		}
	case kindParquet:
		text, err = d.parquetText()
	case kindPasskey:
		text = d.sample.text()
	}
	if err != nil {
		return nil, err
	}
	return []Span{{Text: text, Loss: true}}, nil
}

// Split divides the corpus for evaluation: every holdoutEvery-th document by
// index (the n-th, 2n-th, ...) goes to held, the rest to train, both in corpus
// order. With holdoutEvery <= 0 nothing is held out and held is empty (Len 0).
func (c *Corpus) Split(holdoutEvery int) (train, held *Corpus) {
	train, held = &Corpus{}, &Corpus{}
	for i, d := range c.docs {
		if holdoutEvery > 0 && (i+1)%holdoutEvery == 0 {
			held.docs = append(held.docs, d)
		} else {
			train.docs = append(train.docs, d)
		}
	}
	return train, held
}
