package tokenizer

import "unicode/utf8"

// Byte-level alphabets and UTF-8 repair: what the byte-level BPEs and both ends of
// the pipeline need to turn arbitrary bytes into the strings Hugging Face works on.

// byteChar is GPT-2's bytes_to_unicode: each byte's stand-in character in a
// byte-level vocabulary ("Ġ" for a space, "Ċ" for a newline). Printable Latin-1
// bytes stand for themselves; the other 68 take U+0100 onwards in byte order.
var byteChar, charByte = func() (t [256]rune, inv map[rune]byte) {
	inv = make(map[rune]byte, 256)
	n := rune(0)
	for b := range 256 {
		printable := b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE
		if printable {
			t[b] = rune(b)
		} else {
			t[b] = 256 + n
			n++
		}
		inv[t[b]] = byte(b)
	}
	return t, inv
}()

// byteCharString holds byteChar's characters as strings.
var byteCharString = func() (s [256]string) {
	for b, r := range byteChar {
		s[b] = string(r)
	}
	return s
}()

// byteLevelBytes maps a byte-level token ("Ġhello") to the bytes it stands for
// (" hello"). ok is false when a character is outside the alphabet; Hugging Face's
// ByteLevel decoder then takes the token's own UTF-8 bytes, and so do we.
func byteLevelBytes(tok string) (b []byte, ok bool) {
	b = make([]byte, 0, len(tok))
	for _, r := range tok {
		c, in := charByte[r]
		if !in {
			return []byte(tok), false
		}
		b = append(b, c)
	}
	return b, true
}

// toByteLevel maps raw bytes to their byte-level characters: " hi" to "Ġhi".
func toByteLevel(b string) string {
	out := make([]byte, 0, 2*len(b))
	for i := 0; i < len(b); i++ {
		out = utf8.AppendRune(out, byteChar[b[i]])
	}
	return string(out)
}

// appendValidUTF8 appends src to dst with every ill-formed sequence replaced by
// U+FFFD, one per maximal subpart (Unicode 3.9, "substitution of maximal
// subparts"): the rule of the WHATWG decoder (JavaScript's TextDecoder), of
// Python's bytes.decode(errors="replace") and of Rust's String::from_utf8_lossy,
// so every Hugging Face front end turns the same bytes into the same text.
func appendValidUTF8(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		if c := src[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\uFFFD"...)
			i += maximalSubpart(src[i:])
			continue
		}
		dst = append(dst, src[i:i+n]...)
		i += n
	}
	return dst
}

// validString returns text as a string, repaired as appendValidUTF8 does.
func validString(text []byte) string {
	if utf8.Valid(text) {
		return string(text)
	}
	return string(appendValidUTF8(make([]byte, 0, len(text)+8), text))
}

// maximalSubpart is the length (at least 1) of the ill-formed prefix of p that one
// U+FFFD replaces: the lead byte and the continuation bytes that could still have
// completed it (Unicode Table 3-7).
func maximalSubpart(p []byte) int {
	n, lo, hi := 0, byte(0x80), byte(0xBF)
	switch b := p[0]; {
	case b >= 0xC2 && b <= 0xDF:
		n = 2
	case b == 0xE0:
		n, lo = 3, 0xA0
	case b == 0xED:
		n, hi = 3, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		n = 3
	case b == 0xF0:
		n, lo = 4, 0x90
	case b == 0xF4:
		n, hi = 4, 0x8F
	case b >= 0xF1 && b <= 0xF3:
		n = 4
	default:
		return 1
	}
	k := 1
	for ; k < n && k < len(p); k++ {
		if c := p[k]; k == 1 && (c < lo || c > hi) || k > 1 && (c < 0x80 || c > 0xBF) {
			break
		}
	}
	return k
}
