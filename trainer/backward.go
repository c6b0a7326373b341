package trainer

import (
	"context"
	"fmt"
	"iter"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// ForwardBackward runs one micro-batch: the loss sum(weight*CE)*scale and, added
// into grads, its gradient with respect to every parameter.
func (e *Engine) ForwardBackward(ctx context.Context, b data.Batch, scale float64, grads Grads) (float64, error) {
	var loss float64
	for _, err := range e.Backward(ctx, b, scale, grads, &loss) {
		if err != nil {
			return 0, err
		}
	}
	return loss, nil
}

// Backward is ForwardBackward as a sequence of layers: it runs the forward and
// the head (the loss goes into *loss), then goes back through the layers and
// yields each one's index as its gradients are complete, top layer first, so the
// caller can start reducing them while the layers below are still going back.
// The embedding's gradient is added after the last layer. An error ends the
// sequence, as its last element.
func (e *Engine) Backward(ctx context.Context, b data.Batch, scale float64, grads Grads, loss *float64) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		bt, err := e.prepare(b)
		if err != nil {
			yield(-1, err)
			return
		}
		h, err := e.forward(ctx, bt, b.Tokens)
		if err != nil {
			yield(-1, err)
			return
		}
		headLoss, dh, err := e.headBackward(h, bt, scale, grads)
		if err != nil {
			yield(-1, fmt.Errorf("trainer: head: %w", err))
			return
		}
		*loss = headLoss
		for l := e.Params.Config.Layers - 1; l >= 0; l-- {
			if dh, err = e.backLayer(ctx, l, dh, bt, grads); err != nil {
				yield(-1, err)
				return
			}
			if !yield(l, nil) {
				return
			}
		}
		if err := e.embedGrad(b.Tokens, bt, dh, grads); err != nil {
			yield(-1, err)
		}
	}
}

// forward runs the layers over the embedded tokens, storing what each layer's
// backward needs (its input, and its attention's output and lse when kept); it
// returns the last layer's output.
func (e *Engine) forward(ctx context.Context, bt batchTensors, tokens []int32) (*tensors.Tensor, error) {
	h, err := e.embed(bt, tokens) // h0 [L, D]
	if err != nil {
		return nil, fmt.Errorf("trainer: embed: %w", err)
	}
	for l := range e.Params.Config.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next, o, lse, err := e.layerForward(ctx, l, h, bt)
		if err != nil {
			return nil, fmt.Errorf("trainer: layer %d forward: %w", l, err)
		}
		saved := []*tensors.Tensor{h}
		if e.KeepAttention {
			saved = append(saved, o, lse)
		}
		if err := e.Store.Put(l, saved); err != nil {
			return nil, fmt.Errorf("trainer: store layer %d: %w", l, err)
		}
		e.actPeak = max(e.actPeak, e.Store.Bytes())
		h = next
	}
	return h, nil
}

// backLayer reloads what layer l stored and pulls dh back through it.
func (e *Engine) backLayer(ctx context.Context, l int, dh *tensors.Tensor, bt batchTensors, grads Grads) (*tensors.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	saved, err := e.Store.Get(l)
	if err != nil {
		return nil, fmt.Errorf("trainer: reload layer %d: %w", l, err)
	}
	e.actPeak = max(e.actPeak, e.Store.Bytes()+tensorBytes(saved))
	if dh, err = e.layerBackward(ctx, l, saved, dh, bt, grads); err != nil {
		return nil, fmt.Errorf("trainer: layer %d backward: %w", l, err)
	}
	return dh, nil
}

// embedGrad adds the embedding's gradient (the rows of dh scattered onto the
// tokens' rows) into grads, unless the embedding is frozen (under LoRA, unless
// lora.trainable has embed).
func (e *Engine) embedGrad(tokens []int32, bt batchTensors, dh *tensors.Tensor, grads Grads) error {
	g, ok := grads[embedName]
	if !ok {
		return nil
	}
	if e.Device == nil {
		host.ScatterAddRows(g, tokens, dh)
		return nil
	}
	var err error
	if grads[embedName], err = e.Pieces.EmbedGradOnDevice(g, e.Params.Get(embedName), bt.tokens, dh); err != nil {
		return fmt.Errorf("trainer: embedding gradient: %w", err)
	}
	return nil
}

// headBackward runs the head's VJP: the loss, dh, and the head's gradients
// added into grads. With LossChunk, a chunk of tokens at a time: the logits
// and their gradient are [LossChunk, vocab], never [tokens, vocab]; the chunks'
// losses are summed, their dh laid side by side, and their weight gradients
// added into grads in chunk order.
func (e *Engine) headBackward(h *tensors.Tensor, bt batchTensors, scale float64, grads Grads) (float64, *tensors.Tensor, error) {
	n := h.Shape().Dimensions[0]
	if e.LossChunk <= 0 || n <= e.LossChunk {
		return e.headChunk(h, bt.targets, bt.weight, scale, grads)
	}
	dh := host.NewZeros(h.DType(), h.Shape().Dimensions...)
	loss := 0.0
	for lo := 0; lo < n; lo += e.LossChunk {
		hi := min(lo+e.LossChunk, n)
		l, d, err := e.headChunk(host.SliceRows(h, lo, hi), host.SliceRows(bt.targets, lo, hi), host.SliceRows(bt.weight, lo, hi), scale, grads)
		if err != nil {
			return 0, nil, err
		}
		loss += l
		host.SetRows(dh, lo, d)
	}
	return loss, dh, nil
}

// headChunk is headBackward over the tokens of h, targets and weight.
func (e *Engine) headChunk(h, targets, weight *tensors.Tensor, scale float64, grads Grads) (float64, *tensors.Tensor, error) {
	bt := batchTensors{targets: targets, weight: weight}
	p := e.Params
	sc := host.NewScalar(p.DType, scale)
	if e.LoRA != nil {
		loss, dh, gs, err := e.LoRA.HeadVJP(p, h, bt.targets, bt.weight, sc)
		if err != nil {
			return 0, nil, err
		}
		if err := e.addAll(grads, gs); err != nil {
			return 0, nil, err
		}
		return host.ScalarValue(loss), dh, nil
	}
	head, err := e.Pieces.HeadVJP(p.Get(finalNormName), p.OutputWeight(), h, bt.targets, bt.weight, sc)
	if err != nil {
		return 0, nil, err
	}
	if err := e.add(grads, finalNormName, head.Norm); err != nil {
		return 0, nil, err
	}
	if err := e.add(grads, outputName(p.Config), head.Out); err != nil {
		return 0, nil, err
	}
	return host.ScalarValue(head.Loss), head.H, nil
}

// layerBackward recomputes layer l from what was saved of it (its input h, and
// maybe its attention output and lse) and pulls dhNext back through it, adding
// the weight gradients into grads; it returns dh.
func (e *Engine) layerBackward(ctx context.Context, l int, saved []*tensors.Tensor, dhNext *tensors.Tensor, bt batchTensors, grads Grads) (*tensors.Tensor, error) {
	w, err := e.layer(l)
	if err != nil {
		return nil, err
	}
	h := saved[0]
	q, k, v, err := e.Pieces.PreAttn(w, h, bt.cos, bt.sin)
	if err != nil {
		return nil, err
	}
	var o, lse *tensors.Tensor
	if len(saved) == 3 {
		o, lse = saved[1], saved[2]
	} else if o, lse, err = e.Attn.Forward(ctx, q, k, v, bt.tok); err != nil {
		return nil, err
	}
	if e.LoRA != nil {
		return e.layerBackwardLoRA(ctx, l, w, h, q, k, v, o, lse, dhNext, bt, grads)
	}
	post, err := e.Pieces.PostAttnVJP(w, h, o, dhNext)
	if err != nil {
		return nil, err
	}
	dq, dk, dv, err := e.Attn.Backward(ctx, q, k, v, bt.tok, o, lse, post.O)
	if err != nil {
		return nil, err
	}
	pre, err := e.Pieces.PreAttnVJP(w, h, bt.cos, bt.sin, dq, dk, dv)
	if err != nil {
		return nil, err
	}
	for suffix, g := range map[string]*tensors.Tensor{
		model.OProj: post.OProj, model.PostNorm: post.PostNorm, model.GateProj: post.Gate,
		model.UpProj: post.Up, model.DownProj: post.Down, model.InputNorm: pre.InputNorm,
		model.QProj: pre.Q, model.KProj: pre.K, model.VProj: pre.V,
		model.QProjBias: pre.QBias, model.KProjBias: pre.KBias, model.VProjBias: pre.VBias, model.OProjBias: post.OBias,
	} {
		if g == nil { // a bias the model does not have
			continue
		}
		if err := e.add(grads, model.LayerParam(l, suffix), g); err != nil {
			return nil, err
		}
	}
	return e.sum(post.H, pre.H) // the residual path and the attention path
}

// layerBackwardLoRA is layerBackward's second half for a model with adapters:
// the gradients reach the adapters (and the norms when they train), never the
// frozen projections.
func (e *Engine) layerBackwardLoRA(ctx context.Context, l int, w model.LayerWeights, h, q, k, v, o, lse, dhNext *tensors.Tensor, bt batchTensors, grads Grads) (*tensors.Tensor, error) {
	dhPost, do, gPost, err := e.LoRA.PostAttnVJP(e.Params, l, w, h, o, dhNext)
	if err != nil {
		return nil, err
	}
	dq, dk, dv, err := e.Attn.Backward(ctx, q, k, v, bt.tok, o, lse, do)
	if err != nil {
		return nil, err
	}
	dhPre, gPre, err := e.LoRA.PreAttnVJP(e.Params, l, w, h, bt.cos, bt.sin, dq, dk, dv)
	if err != nil {
		return nil, err
	}
	if err := e.addAll(grads, gPost); err != nil {
		return nil, err
	}
	if err := e.addAll(grads, gPre); err != nil {
		return nil, err
	}
	return e.sum(dhPost, dhPre)
}
