// Package host owns tensors in host memory and the plain copies the schedules
// between graph pieces make of them: slicing and stitching rows and columns,
// adding in place, zeroing, embedding-style gathers, float64 conversion. Tensors
// are row-major, so the rows of axis 0 are contiguous and these are byte copies.
// It imports nothing of torus: model, parallel, trainer, eval and checkpoint all
// use it.
//
//	part := host.SliceRows(h, 0, 128) // rows [0, 128) of h [L, D]
//	host.AddInto(acc, part)           // acc += part, same shape
package host
