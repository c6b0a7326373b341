// Package checkpoint writes and reads training checkpoints (DESIGN.md, "On disk").
//
// Layout of one run's ckpt folder:
//
//	RUN/ckpt/
//	  latest                      "step-000100\n": the newest complete checkpoint
//	  step-000100/                one checkpoint, named for its step (6 digits or more)
//	    manifest.json             step, tokens seen, data cursor, RNG state, recipe hash,
//	                              world layout, optimizer metadata, every other file with
//	                              its size and CRC-32C, and last its own checksum
//	    config.json               Hugging Face LlamaForCausalLM config
//	    model.safetensors         parameters by Hugging Face name
//	    optim-rank-00.safetensors optimizer state by key ("<param>.exp_avg", ...)
//
// A checkpoint folder is a Hugging Face model folder too: transformers and
// model.LoadHF read its config.json and model.safetensors as they are.
//
// # Commit protocol
//
// Save(ckptDir, s) does, in order:
//
//  1. write config.json, model.safetensors and the optimizer file into
//     step-000100.tmp/, each fsynced;
//  2. write manifest.json, listing the files with their sizes and checksums, fsynced;
//  3. fsync step-000100.tmp/ and rename it to step-000100, then fsync ckpt/;
//  4. write latest.tmp, fsync it, rename it to latest, fsync ckpt/.
//
// The rename of step 3 is the commit: a folder named step-NNNNNN is complete.
// A crash
//
//   - during 1 or 2 leaves step-000100.tmp/, which nothing reads: latest still
//     names the previous checkpoint, which is intact;
//   - between 3 and 4 leaves step-000100 complete but latest naming the previous
//     checkpoint: resuming from latest repeats those steps, and the next Save of
//     that step refuses to overwrite the folder (remove it, or resume from it);
//   - during 4 leaves latest naming the previous or the new checkpoint, both complete,
//     and perhaps latest.tmp.
//
// Writer.Submit writes in a background goroutine (training goes on) and then
// prunes by its Policy: a checkpoint is deleted by renaming it to
// step-NNNNNN.del.tmp, fsyncing ckpt/, then removing it, so a crash mid-delete
// leaves no partial folder under a checkpoint's name. NewWriter calls Clean,
// which removes every step-*.tmp folder and latest.tmp the crashes above leave.
//
// # Integrity
//
// Open refuses a manifest that is not exactly what Save wrote: manifest.json
// ends with "manifest_crc32c", the CRC-32C of the bytes before it, so any changed
// byte of it is caught, even one that leaves valid JSON. It also checks that
// every listed file exists with its listed size. Verify reads every file back
// and compares checksums; Load verifies before reading, so a corrupt checkpoint
// is refused with the name of the bad file:
//
//	checkpoint runs/x/ckpt/step-000010: model.safetensors: checksum 1a2b3c4d, manifest says 5e6f7a8b (the file is corrupt)
//
// Resuming:
//
//	dir, err := checkpoint.Latest("runs/x/ckpt") // errors.Is(err, checkpoint.ErrNoCheckpoint): start fresh
//	c, err := checkpoint.Open(dir)
//	params, optState, err := c.Load(dtypes.Float32)
package checkpoint
