package checkpoint

// manifest.json: encoding, the self-checksum, validation.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// maxManifestBytes is the largest manifest.json read.
const maxManifestBytes = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The manifest seals itself: the file ends with
//
//	"manifest_crc32c": "1a2b3c4d"
//	}
//
// where 1a2b3c4d is the CRC-32C of every byte before the opening quote of that
// key. A changed byte before it changes the checksum (CRC-32C detects every error
// burst of up to 32 bits); a changed byte in the key, the digits or the closing
// text breaks the fixed tail. So any one changed byte is caught, including the
// changes that leave valid JSON of the same meaning (a space turned into a tab).
const (
	sealKey  = `"manifest_crc32c": "`
	sealTail = "\"\n}\n"
	sealLen  = len(sealKey) + 8 + len(sealTail)
)

// sealed is manifest.json as stored: the manifest, then its checksum, last.
type sealed struct {
	Manifest
	CRC32C string `json:"manifest_crc32c"`
}

// MarshalManifest renders m as manifest.json (indented, ending with its own
// checksum). It does not validate m: ParseManifest does.
func MarshalManifest(m Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(sealed{m, "00000000"}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	b = append(b, '\n')
	body, _, err := unseal(b)
	if err != nil { // encoding/json wrote other than the tail above: a bug here
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	copy(b[len(body)+len(sealKey):], crcText(crc32.Checksum(body, castagnoli)))
	return b, nil
}

// unseal splits manifest.json into the checked bytes and the checksum its tail states.
func unseal(b []byte) (body []byte, sum uint32, err error) {
	errTail := errors.New(`does not end with its "manifest_crc32c" field (the file is truncated, corrupt or was edited)`)
	if len(b) < sealLen {
		return nil, 0, errTail
	}
	body, tail := b[:len(b)-sealLen], b[len(b)-sealLen:]
	digits := tail[len(sealKey) : len(sealKey)+8]
	if !bytes.HasPrefix(tail, []byte(sealKey)) || !bytes.HasSuffix(tail, []byte(sealTail)) {
		return nil, 0, errTail
	}
	sum, ok := parseCRC(string(digits))
	if !ok {
		return nil, 0, fmt.Errorf("manifest_crc32c %q is not 8 lowercase hex digits (the file is corrupt)", digits)
	}
	return body, sum, nil
}

// ParseManifest checks manifest.json's own checksum, decodes it strictly (no
// unknown fields, nothing after the object) and validates it: the format, counts
// that cannot be negative, the creation time, and every file entry (a plain file
// name, listed once, a size, 8 hex digits of checksum), config.json and
// model.safetensors among them. Errors start with "manifest.json: ".
func ParseManifest(b []byte) (Manifest, error) {
	m, err := parseManifest(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	return m, nil
}

func parseManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifestBytes {
		return Manifest{}, fmt.Errorf("%d bytes, over the %d MiB limit", len(b), maxManifestBytes>>20)
	}
	body, want, err := unseal(b)
	if err != nil {
		return Manifest{}, err
	}
	if got := crc32.Checksum(body, castagnoli); got != want {
		return Manifest{}, fmt.Errorf("checksum %08x, manifest_crc32c says %08x (the file is corrupt)", got, want)
	}
	m, err := decodeManifest(b)
	if err != nil {
		return Manifest{}, err
	}
	return m, validate(m)
}

// decodeManifest is the strict JSON decoding of manifest.json, checksum aside.
func decodeManifest(b []byte) (Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s sealed
	if err := dec.Decode(&s); err != nil {
		return Manifest{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("data after the JSON object")
	}
	return s.Manifest, nil
}

// validate checks what a decoded manifest says, naming the field.
func validate(m Manifest) error {
	switch {
	case m.Format != Format:
		return fmt.Errorf("format %q, want %q", m.Format, Format)
	case m.Step < 0:
		return fmt.Errorf("step %d is negative", m.Step)
	case m.TokensSeen < 0:
		return fmt.Errorf("tokens_seen %d is negative", m.TokensSeen)
	case m.World.Workers < 0 || m.World.SP < 0 || m.World.DP < 0:
		return fmt.Errorf("world %+v has a negative count", m.World)
	}
	if _, err := time.Parse(time.RFC3339, m.Created); err != nil {
		return fmt.Errorf("created %q is not an RFC 3339 time", m.Created)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		if err := checkFileName(f.Path); err != nil {
			return fmt.Errorf("files[%d]: path %q %w", i, f.Path, err)
		}
		switch _, ok := parseCRC(f.CRC32C); {
		case seen[f.Path]:
			return fmt.Errorf("files[%d]: %s is listed twice", i, f.Path)
		case f.Bytes < 0:
			return fmt.Errorf("files[%d]: %s: bytes %d is negative", i, f.Path, f.Bytes)
		case !ok:
			return fmt.Errorf("files[%d]: %s: crc32c %q is not 8 lowercase hex digits", i, f.Path, f.CRC32C)
		}
		seen[f.Path] = true
	}
	for _, need := range []string{ConfigFile, ModelFile} {
		if !seen[need] {
			return fmt.Errorf("files does not list %s", need)
		}
	}
	return nil
}

// checkFileName refuses any path but a plain file name of the checkpoint folder.
func checkFileName(p string) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case p == "." || p == "..":
		return errors.New("is not a file name")
	case strings.ContainsAny(p, "/\\\x00") || filepath.IsAbs(p) || filepath.Base(p) != p || filepath.VolumeName(p) != "":
		return errors.New("is not a plain file name inside the checkpoint folder")
	case p == ManifestFile:
		return errors.New("is the manifest itself")
	}
	return nil
}

// parseCRC reads 8 lowercase hex digits.
func parseCRC(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var v uint32
	for i := range len(s) {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint32(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// crcText is a checksum as the manifest writes it.
func crcText(sum uint32) string { return fmt.Sprintf("%08x", sum) }
