package model

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

// The embedding as compiled pieces, for backends where the table lives on a
// device: the host helpers Embed and EmbedGrad would copy it to the host and
// back every micro-batch.

// embedPieces are compiled on first use.
type embedPieces struct {
	lookup, gradNew, gradAdd *Exec
}

func newEmbedPieces(p *Pieces) (embedPieces, error) {
	var e embedPieces
	var err error
	mk := func(name string, fn func([]*Node) []*Node) *Exec {
		if err != nil {
			return nil
		}
		var x *Exec
		if x, err = NewExec(p.backend, fn); err != nil {
			err = fmt.Errorf("model: piece %s: %w", name, err)
			return nil
		}
		return x.WithName(name).SetMaxCache(8)
	}
	// in: table [V, D], tokens [L] int32 -> h [L, D]
	e.lookup = mk("Embed", func(in []*Node) []*Node {
		return []*Node{Gather(in[0], ExpandAxes(in[1], -1))}
	})
	// in: like [V, D] (for its shape only), tokens [L], dh [L, D] -> the table's gradient
	e.gradNew = mk("EmbedGrad", func(in []*Node) []*Node {
		zeros := ZerosLike(in[0])
		return []*Node{ScatterSum(zeros, ExpandAxes(in[1], -1), in[2], false, false)}
	})
	// in: grad [V, D], tokens [L], dh [L, D] -> grad + the rows of dh at the tokens
	e.gradAdd = mk("EmbedGradAdd", func(in []*Node) []*Node {
		return []*Node{ScatterSum(in[0], ExpandAxes(in[1], -1), in[2], false, false)}
	})
	return e, err
}

// EmbedOnDevice: the rows of table [V, D] picked by tokens [L] int32 -> [L, D],
// computed where the table is.
func (p *Pieces) EmbedOnDevice(table, tokens *tensors.Tensor) (*tensors.Tensor, error) {
	e, err := p.embeds()
	if err != nil {
		return nil, err
	}
	out, err := run(e.lookup, 1, table, tokens)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EmbedGradOnDevice returns grad with the rows of dh [L, D] added at the
// tokens' rows; a nil grad starts from zeros shaped like table.
func (p *Pieces) EmbedGradOnDevice(grad, table, tokens, dh *tensors.Tensor) (*tensors.Tensor, error) {
	e, err := p.embeds()
	if err != nil {
		return nil, err
	}
	var out []*tensors.Tensor
	if grad == nil {
		out, err = run(e.gradNew, 1, table, tokens, dh)
	} else {
		out, err = run(e.gradAdd, 1, grad, tokens, dh)
	}
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (p *Pieces) embeds() (embedPieces, error) {
	p.embedOnce.Do(func() { p.embed, p.embedErr = newEmbedPieces(p) })
	return p.embed, p.embedErr
}
