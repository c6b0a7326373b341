package data

// Span is a piece of a document's text and whether the loss counts its
// tokens. A plain text document is one span that counts; an sft document
// alternates template and prompt spans that do not count with response spans
// that do (see sft.go).
type Span struct {
	Text []byte
	Loss bool
}

// EncodeSpans returns the token ids of the spans, each encoded on its own and
// concatenated, and loss[i]: whether the loss counts token i (the Loss of its
// span). Encoding span by span keeps every token inside one span; with the
// byte tokenizer it equals encoding the whole text.
func EncodeSpans(tok Tokenizer, spans []Span) (ids []int32, loss []bool) {
	ids, loss = encodeSpans(tok, spans)
	if loss == nil {
		loss = make([]bool, len(ids))
		for i := range loss {
			loss[i] = true
		}
	}
	return ids, loss
}

// encodeSpans is EncodeSpans with loss nil when every span counts, as for
// every plain text document, so that a lane caches no mask for it.
func encodeSpans(tok Tokenizer, spans []Span) (ids []int32, loss []bool) {
	if len(spans) == 1 && spans[0].Loss {
		return tok.Encode(spans[0].Text), nil
	}
	all := true
	for _, s := range spans {
		all = all && s.Loss
	}
	for _, s := range spans {
		t := tok.Encode(s.Text)
		ids = append(ids, t...)
		if !all {
			for range t {
				loss = append(loss, s.Loss)
			}
		}
	}
	return ids, loss
}

// joinSpans is the text of the spans, concatenated.
func joinSpans(spans []Span) []byte {
	if len(spans) == 1 {
		return spans[0].Text
	}
	n := 0
	for _, s := range spans {
		n += len(s.Text)
	}
	text := make([]byte, 0, n)
	for _, s := range spans {
		text = append(text, s.Text...)
	}
	return text
}
