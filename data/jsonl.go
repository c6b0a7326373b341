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
	return listLines(path, "jsonl", func(d *DocRef, line []byte) error {
		d.field = field
		_, err := d.lineText(line)
		return err
	})
}

// listLines indexes the non-blank lines of a file of type typ (jsonl or sft)
// as documents of kind kindLine, each given to check, which may set the
// document's kind and field and returns the line's error. A file named
// *.gz or *.zst is decompressed on the way (see compress.go); its documents'
// offsets are then in the decompressed text.
func listLines(path, typ string, check func(d *DocRef, line []byte) error) (docs []DocRef, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory (%s wants a file)", path, typ)
	}

	var src io.Reader = f
	codec := codecOf(path)
	var sp *spillWriter
	if codec != "" {
		dec, err := decompressor(codec, f)
		if err != nil {
			return nil, fmt.Errorf("%s: not %s data: %w", path, codec, err)
		}
		defer dec.Close()
		src = dec
		if sp, err = newSpill(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer func() {
			if err != nil {
				sp.s.f.Close()
			}
		}()
	}

	var off int64 // byte offset of the current line
	r := bufio.NewReaderSize(src, 1<<16)
	for lineNo := 1; ; lineNo++ {
		raw, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			if codec != "" {
				err = corrupt(codec, err)
			}
			return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		line := bytes.TrimSuffix(raw, []byte("\n"))
		if len(bytes.TrimSpace(line)) > 0 {
			d := DocRef{
				Name: fmt.Sprintf("%s:%d", path, lineNo), kind: kindLine, path: path,
				off: off, size: len(line), line: lineNo,
			}
			if sp != nil {
				d.spill = sp.s
			}
			if err := check(&d, line); err != nil {
				return nil, err
			}
			docs = append(docs, d)
		}
		if sp != nil {
			if err := sp.add(raw); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
		}
		off += int64(len(raw))
		if err == io.EOF {
			break
		}
	}
	switch {
	case off == 0 && codec != "":
		return nil, fmt.Errorf("%s: empty file (nothing after %s decompression)", path, codec)
	case off == 0:
		return nil, fmt.Errorf("%s: empty file", path)
	case len(docs) == 0:
		return nil, fmt.Errorf("%s: no documents: only blank lines", path)
	}
	if sp != nil {
		if err := sp.flush(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return docs, nil
}

// readLine reads the document's line back from its file, or from the
// decompressed copy of a compressed one.
func readLine(d *DocRef) ([]byte, error) {
	if d.spill != nil {
		line, err := d.spill.read(d.off, d.size)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", d.path, d.line, err)
		}
		return line, nil
	}
	f, err := os.Open(d.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line := make([]byte, d.size)
	if _, err := f.ReadAt(line, d.off); err != nil {
		return nil, fmt.Errorf("%s:%d: %w (file changed since the corpus was opened?)", d.path, d.line, err)
	}
	return line, nil
}

// lineText returns the string field of one JSON line.
func (d *DocRef) lineText(line []byte) ([]byte, error) {
	obj, err := d.jsonObject(line)
	if err != nil {
		return nil, err
	}
	s, err := d.stringField(obj, d.field, d.field)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, d.errorf("field %q is empty", d.field)
	}
	return []byte(s), nil
}

// stringField returns obj[name], which must be a JSON string; key is how
// errors name it.
func (d *DocRef) stringField(obj map[string]json.RawMessage, key, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", d.errorf("no field %q", key)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", d.errorf("field %q is not a string: %.40s", key, raw)
	}
	return s, nil
}

// jsonObject parses one JSON line as an object.
func (d *DocRef) jsonObject(line []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return nil, d.errorf("not a JSON object: %.40s", line)
		}
		return nil, d.errorf("invalid JSON: %w", err)
	}
	return obj, nil
}

// errorf is an error about the document's line: "path:line: ...".
func (d *DocRef) errorf(format string, args ...any) error {
	return fmt.Errorf("%s:%d: %w", d.path, d.line, fmt.Errorf(format, args...))
}
