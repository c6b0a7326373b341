package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// listJSONL indexes a JSON Lines file in one pass: every non-blank line is a
// document whose text is the string field field (default "text"). Each line
// is checked now, so that a bad line fails at open rather than mid-training;
// only its offset and length are kept.
func listJSONL(path, field string) ([]DocRef, error) {
	if field == "" {
		field = "text"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory (jsonl wants a file)", path)
	}

	var docs []DocRef
	var off int64 // byte offset of the current line
	r := bufio.NewReaderSize(f, 1<<16)
	for lineNo := 1; ; lineNo++ {
		raw, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		line := bytes.TrimSuffix(raw, []byte("\n"))
		if len(bytes.TrimSpace(line)) > 0 {
			d := DocRef{
				Name: fmt.Sprintf("%s:%d", path, lineNo), kind: kindLine, path: path,
				off: off, size: len(line), line: lineNo, field: field,
			}
			if _, err := d.lineText(line); err != nil {
				return nil, err
			}
			docs = append(docs, d)
		}
		off += int64(len(raw))
		if err == io.EOF {
			break
		}
	}
	switch {
	case off == 0:
		return nil, fmt.Errorf("%s: empty file", path)
	case len(docs) == 0:
		return nil, fmt.Errorf("%s: no documents: only blank lines", path)
	}
	return docs, nil
}

// readLine reads the document's line back from its file and returns its text.
func readLine(d *DocRef) ([]byte, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line := make([]byte, d.size)
	if _, err := f.ReadAt(line, d.off); err != nil {
		return nil, fmt.Errorf("%s:%d: %w (file changed since the corpus was opened?)", d.path, d.line, err)
	}
	return d.lineText(line)
}

// lineText returns the string field of one JSON line.
func (d *DocRef) lineText(line []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return nil, fmt.Errorf("%s:%d: not a JSON object: %.40s", d.path, d.line, line)
		}
		return nil, fmt.Errorf("%s:%d: invalid JSON: %w", d.path, d.line, err)
	}
	raw, ok := obj[d.field]
	if !ok {
		return nil, fmt.Errorf("%s:%d: no field %q", d.path, d.line, d.field)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("%s:%d: field %q is not a string: %.40s", d.path, d.line, d.field, raw)
	}
	if s == "" {
		return nil, fmt.Errorf("%s:%d: field %q is empty", d.path, d.line, d.field)
	}
	return []byte(s), nil
}
