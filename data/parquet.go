package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// A parquet source is a Parquet file, or a folder of them, with one document
// per row: the row's value in the string column Column (default "text"). A
// folder is read as Hugging Face datasets lay out their shards
// (data/train-00000-of-00003.parquet, ...): every file under it, at any depth,
// whose base name matches an Include glob (default "*.parquet"; use
// ["train-*.parquet"] to leave the other splits out), in path order, hidden
// and testdata directories skipped as for text_dir. A document is named
// "file.parquet[17]": row 17, counted from 0, of that file.
//
// Opening the source reads the column of every file once, row group by row
// group and page by page, never a whole file in memory: it checks that every
// page decodes, skips the rows whose value is null or empty (they have no
// text to learn from: wikitext's blank lines are such rows), and notes where
// each data page starts in the file. Reading a document then decodes its page
// alone (and the column chunk's dictionary page, if the page is
// dictionary-encoded), wherever it lies and whether or not the file has an
// offset index: a shuffled order costs one page per document, not the row
// group before it.
//
// The page reader is torus's own (parquetpage.go, parquetenc.go), on
// parquet-go's metadata types and thrift decoder. parquet-go's own page
// reader reaches a page only through the pages before it (or an offset
// index, which Hugging Face's files do not have), and it panics on some
// malformed files where this one returns an error. It reads what writers
// use for a string column: data pages v1 and v2; PLAIN, PLAIN_DICTIONARY,
// RLE_DICTIONARY, DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY values;
// UNCOMPRESSED, SNAPPY, GZIP, ZSTD, BROTLI and LZ4_RAW compression. Other
// codecs (LZO, the old Hadoop LZ4) are errors naming them. The decoded pages
// read last are cached (64 MiB at most).
//
// Errors name the file and the problem: a missing column (with the columns
// there are), a column that does not hold strings, a file that is not Parquet
// or is truncated or corrupt (with the row group and the page's byte offset).

// pqFile is a parquet file as it was when the corpus was opened.
type pqFile struct {
	path string
	size int64
	mod  time.Time
}

// pqChunk is the text column's chunk in one row group.
type pqChunk struct {
	file    *pqFile
	group   int // row group
	codec   format.CompressionCodec
	maxDef  int   // 1 for an optional column (rows may be null), 0 for a required one
	dictOff int64 // where its dictionary page starts; -1: it has none
}

// pqPage is one data page of a chunk: where a document finds its value.
type pqPage struct {
	chunk    *pqChunk
	off      int64 // where the page (its header) starts in the file
	firstRow int64 // file row of its first value
	rows     int64
}

// listParquet lists the documents of a parquet source at path, a file or a
// folder. The caller checked the include globs.
func listParquet(path string, include []string, column string) ([]DocRef, error) {
	if column == "" {
		column = "text"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		if len(include) == 0 {
			include = []string{"*.parquet"}
		}
		if files, err = matchingFiles(path, include, nil); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no documents: no non-empty file matches include %q", path, include)
		}
	}
	var docs []DocRef
	var rows int64
	for _, f := range files {
		d, n, err := listParquetFile(f, column)
		if err != nil {
			return nil, err
		}
		docs, rows = append(docs, d...), rows+n
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no documents: column %q is null or empty in all %d rows (%d files)", path, column, rows, len(files))
	}
	return docs, nil
}

// listParquetFile lists the documents of one file and returns its row count.
func listParquetFile(path, column string) ([]DocRef, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if fi.IsDir() {
		return nil, 0, fmt.Errorf("%s: is a directory", path)
	}
	md, err := readFooter(f, fi.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	leaf, maxDef, err := findColumn(md, column)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	file := &pqFile{path: path, size: fi.Size(), mod: fi.ModTime()}
	var docs []DocRef
	var row int64 // the file row of the row group's first row
	for g, rg := range md.RowGroups {
		if leaf >= len(rg.Columns) {
			return nil, 0, fmt.Errorf("%s: row group %d: corrupt: %d columns, the schema has more", path, g, len(rg.Columns))
		}
		cc := rg.Columns[leaf]
		if cc.FilePath != "" {
			return nil, 0, fmt.Errorf("%s: row group %d: the column's data is in another file (%s), which torus does not read", path, g, cc.FilePath)
		}
		chunk := &pqChunk{file: file, group: g, codec: cc.MetaData.Codec, maxDef: maxDef, dictOff: -1}
		err := chunk.walk(f, &cc.MetaData, row, rg.NumRows, func(p *pqPage, vals [][]byte) {
			for i, v := range vals {
				if len(v) > 0 { // null and empty rows are not documents
					r := p.firstRow + int64(i)
					docs = append(docs, DocRef{Name: fmt.Sprintf("%s[%d]", path, r), kind: kindParquet, path: path, pq: p, row: r})
				}
			}
		})
		if err != nil {
			return nil, 0, fmt.Errorf("%s: row group %d: %w", path, g, err)
		}
		row += rg.NumRows
	}
	return docs, row, nil
}

// readFooter reads a Parquet file's metadata.
func readFooter(f io.ReaderAt, size int64) (*format.FileMetaData, error) {
	if size < 12 {
		return nil, fmt.Errorf("not a Parquet file: %d bytes", size)
	}
	var head, tail [8]byte
	if _, err := f.ReadAt(head[:4], 0); err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(tail[:], size-8); err != nil {
		return nil, err
	}
	switch {
	case string(head[:4]) != "PAR1":
		return nil, errors.New("not a Parquet file: it does not start with PAR1")
	case string(tail[4:]) == "PARE":
		return nil, errors.New("an encrypted Parquet file, which torus does not read")
	case string(tail[4:]) != "PAR1":
		return nil, errors.New("truncated or corrupt Parquet file: it does not end with PAR1")
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-12 {
		return nil, fmt.Errorf("truncated or corrupt Parquet file: a footer of %d bytes in a file of %d", n, size)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, size-8-n); err != nil {
		return nil, err
	}
	md := new(format.FileMetaData)
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), b, md); err != nil {
		return nil, fmt.Errorf("corrupt Parquet footer: %w", err)
	}
	return md, nil
}

// findColumn finds the top-level column name in md's schema and returns its
// leaf index and maximum definition level. It must hold strings.
func findColumn(md *format.FileMetaData, name string) (leaf, maxDef int, err error) {
	schema := md.Schema
	if len(schema) == 0 {
		return 0, 0, errors.New("corrupt Parquet footer: no schema")
	}
	var names []string
	i := 1
	for range schema[0].NumChildren.V {
		if i >= len(schema) {
			return 0, 0, errors.New("corrupt Parquet footer: the schema ends early")
		}
		el := schema[i]
		next, leaves, err := subtree(schema, i)
		if err != nil {
			return 0, 0, err
		}
		if el.Name == name {
			switch {
			case !el.Type.Valid:
				return 0, 0, fmt.Errorf("column %q is a group (a struct, list or map), not a string column", name)
			case el.RepetitionType.Valid && el.RepetitionType.V == format.Repeated:
				return 0, 0, fmt.Errorf("column %q is repeated, not a string column", name)
			case el.Type.V != format.ByteArray:
				return 0, 0, fmt.Errorf("column %q holds %s values, not strings (BYTE_ARRAY)", name, el.Type.V)
			}
			if el.RepetitionType.Valid && el.RepetitionType.V == format.Optional {
				maxDef = 1
			}
			return leaf, maxDef, nil
		}
		names = append(names, el.Name)
		leaf, i = leaf+leaves, next
	}
	return 0, 0, fmt.Errorf("no column %q: its columns are %s", name, strings.Join(names, ", "))
}

// subtree returns the index after the schema element at i and its subtree,
// and the number of leaf columns in it.
func subtree(schema []format.SchemaElement, i int) (next, leaves int, err error) {
	el := schema[i]
	if el.Type.Valid {
		return i + 1, 1, nil
	}
	next = i + 1
	for range el.NumChildren.V {
		if next >= len(schema) {
			return 0, 0, errors.New("corrupt Parquet footer: the schema ends early")
		}
		var n int
		if next, n, err = subtree(schema, next); err != nil {
			return 0, 0, err
		}
		leaves += n
	}
	return next, leaves, nil
}

// walk reads the chunk's pages in order, from the file f, and calls fn with
// each data page and its values, one per row (nil for null). Its first row is
// file row firstRow, and it has rows rows.
func (c *pqChunk) walk(f io.ReaderAt, meta *format.ColumnMetaData, firstRow, rows int64, fn func(*pqPage, [][]byte)) error {
	start := meta.DataPageOffset
	if meta.DictionaryPageOffset > 0 && meta.DictionaryPageOffset < start {
		start = meta.DictionaryPageOffset
	}
	if start < 4 || meta.TotalCompressedSize < 0 || start+meta.TotalCompressedSize > c.file.size {
		return fmt.Errorf("truncated or corrupt: the column chunk at byte %d (%d bytes) is not inside the file (%d bytes)", start, meta.TotalCompressedSize, c.file.size)
	}
	sec := io.NewSectionReader(f, start, meta.TotalCompressedSize)
	br := bufio.NewReaderSize(sec, 64<<10)
	var dict [][]byte
	var n int64
	for n < rows {
		pos, _ := sec.Seek(0, io.SeekCurrent)
		at := start + pos - int64(br.Buffered())
		h, body, err := readPage(br, start+meta.TotalCompressedSize-at)
		if err != nil {
			return fmt.Errorf("page at byte %d: %w (%d of %d rows read)", at, err, n, rows)
		}
		switch h.Type {
		case format.DictionaryPage:
			if dict, err = c.dictionary(h, body); err != nil {
				return fmt.Errorf("dictionary page at byte %d: %w", at, err)
			}
			c.dictOff = at
		case format.DataPage, format.DataPageV2:
			vals, err := c.values(h, body, rows-n, func() ([][]byte, error) {
				if dict == nil {
					return nil, errors.New("corrupt: dictionary-encoded values and no dictionary page before them")
				}
				return dict, nil
			})
			if err != nil {
				return fmt.Errorf("page at byte %d: %w", at, err)
			}
			p := &pqPage{chunk: c, off: at, firstRow: firstRow + n, rows: int64(len(vals))}
			fn(p, vals)
			n += p.rows
		}
	}
	if n != rows {
		return fmt.Errorf("corrupt: its pages hold %d rows, the row group %d", n, rows)
	}
	return nil
}

// parquetText reads the document's value: its page (and dictionary) only.
func (d *DocRef) parquetText() ([]byte, error) {
	p, c := d.pq, d.pq.chunk
	vals, err := pqPages.get(p)
	if err != nil {
		return nil, fmt.Errorf("%s[%d]: row group %d: page at byte %d: %w", d.path, d.row, c.group, p.off, err)
	}
	v := vals[d.row-p.firstRow]
	if len(v) == 0 {
		return nil, fmt.Errorf("%s[%d]: empty, not when the corpus was opened", d.path, d.row)
	}
	return append([]byte(nil), v...), nil // not the whole page kept alive by a document
}

// readValues reads and decodes the page from its file.
func (p *pqPage) readValues() ([][]byte, error) {
	c := p.chunk
	f, err := os.Open(c.file.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if fi.Size() != c.file.size || !fi.ModTime().Equal(c.file.mod) {
		return nil, errors.New("the file changed since the corpus was opened")
	}
	h, body, err := readPage(bufio.NewReader(io.NewSectionReader(f, p.off, c.file.size-p.off)), c.file.size-p.off)
	if err != nil {
		return nil, err
	}
	vals, err := c.values(h, body, p.rows, func() ([][]byte, error) { return c.readDictionary(f) })
	if err == nil && int64(len(vals)) != p.rows {
		err = fmt.Errorf("corrupt: %d rows, %d when the corpus was opened", len(vals), p.rows)
	}
	return vals, err
}

// readDictionary reads the chunk's dictionary page from f.
func (c *pqChunk) readDictionary(f io.ReaderAt) ([][]byte, error) {
	if c.dictOff < 0 {
		return nil, errors.New("corrupt: dictionary-encoded values and no dictionary page")
	}
	h, body, err := readPage(bufio.NewReader(io.NewSectionReader(f, c.dictOff, c.file.size-c.dictOff)), c.file.size-c.dictOff)
	if err != nil {
		return nil, fmt.Errorf("dictionary page at byte %d: %w", c.dictOff, err)
	}
	if h.Type != format.DictionaryPage {
		return nil, fmt.Errorf("corrupt: the page at byte %d is not the dictionary it was", c.dictOff)
	}
	return c.dictionary(h, body)
}
