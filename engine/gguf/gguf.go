// Package gguf writes GGUF files, the single-file model format that
// llama.cpp and Ollama load.
//
// A GGUF file (version 3, little-endian) is laid out as:
//
//	magic "GGUF" | uint32 version | uint64 tensor count | uint64 metadata count
//	metadata: key (uint64 length + bytes), uint32 value type, value
//	tensor infos: name, uint32 n_dims, uint64 dims[n_dims] (innermost
//	    first: dims[0] is the row width), uint32 ggml type, uint64 offset
//	padding to general.alignment (32 unless the metadata says otherwise)
//	tensor data, each tensor at its offset (relative to the data start),
//	    every offset a multiple of the alignment
//
// Strings are a uint64 byte length then UTF-8 bytes without a terminator;
// arrays are a uint32 element type, a uint64 count, then the elements.
// Tensor data is produced one tensor at a time while writing, so a model is
// never held twice in memory.
package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"whet/engine/atomicfile"
)

// Version is the GGUF version this package writes.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is a metadata value's type tag.
type ValueType uint32

// Metadata value types, numbered as the format defines them.
const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
)

// KV is one metadata entry. Value must be one of uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64, float64, or a
// slice of one of those (written as an array).
type KV struct {
	Key   string
	Value any
}

// TensorType is a ggml tensor element type.
type TensorType uint32

// The ggml types this package can write, with ggml's numbers.
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q5_0 TensorType = 6
	Q5_1 TensorType = 7
	Q8_0 TensorType = 8
	Q4_K TensorType = 12
	Q5_K TensorType = 13
	Q6_K TensorType = 14
	BF16 TensorType = 30
)

// String names the type as llama.cpp does.
func (t TensorType) String() string {
	switch t {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case Q5_0:
		return "Q5_0"
	case Q5_1:
		return "Q5_1"
	case Q8_0:
		return "Q8_0"
	case Q4_K:
		return "Q4_K"
	case Q5_K:
		return "Q5_K"
	case Q6_K:
		return "Q6_K"
	case BF16:
		return "BF16"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is how many elements one block of t holds, and BlockBytes how
// many bytes it takes.
func (t TensorType) BlockSize() int {
	switch t {
	case Q5_0, Q5_1, Q8_0:
		return 32
	case Q4_K, Q5_K, Q6_K:
		return QK_K
	}
	return 1
}

// BlockBytes is the size in bytes of one block of t.
func (t TensorType) BlockBytes() int {
	switch t {
	case F32:
		return 4
	case F16, BF16:
		return 2
	case Q5_0:
		return q5_0Bytes
	case Q5_1:
		return q5_1Bytes
	case Q8_0:
		return q8_0Bytes
	case Q4_K:
		return q4KBytes
	case Q5_K:
		return q5KBytes
	case Q6_K:
		return q6KBytes
	}
	return 0
}

// RowBytes is the size of a row of n elements, or an error when n is not
// a whole number of blocks.
func (t TensorType) RowBytes(n int) (int, error) {
	bs := t.BlockSize()
	if t.BlockBytes() == 0 {
		return 0, fmt.Errorf("gguf: unknown tensor type %d", uint32(t))
	}
	if n%bs != 0 {
		return 0, fmt.Errorf("gguf: a row of %d elements is not a multiple of %s's block of %d", n, t, bs)
	}
	return n / bs * t.BlockBytes(), nil
}

// Tensor describes one tensor to write. Dims are in GGUF order: Dims[0] is
// the row width (a PyTorch [out, in] weight has Dims {in, out}). Data
// returns the encoded bytes when the writer reaches the tensor.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
	Data func() ([]byte, error)
}

// Size is the number of data bytes the tensor takes.
func (t Tensor) Size() (int64, error) {
	if len(t.Dims) == 0 || len(t.Dims) > 4 {
		return 0, fmt.Errorf("gguf: tensor %s: %d dimensions (want 1 to 4)", t.Name, len(t.Dims))
	}
	for _, d := range t.Dims {
		if d == 0 {
			return 0, fmt.Errorf("gguf: tensor %s: zero dimension in %v", t.Name, t.Dims)
		}
	}
	row, err := t.Type.RowBytes(int(t.Dims[0]))
	if err != nil {
		return 0, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	n := int64(row)
	for _, d := range t.Dims[1:] {
		n *= int64(d)
	}
	return n, nil
}

// File is a GGUF file to write: metadata in the order given, then tensors.
type File struct {
	KV      []KV
	Tensors []Tensor
}

// alignment returns general.alignment when set, else the default.
func (f *File) alignment() (int64, error) {
	for _, kv := range f.KV {
		if kv.Key != "general.alignment" {
			continue
		}
		a, ok := kv.Value.(uint32)
		if !ok || a == 0 || a%8 != 0 {
			return 0, fmt.Errorf("gguf: general.alignment must be a uint32 multiple of 8, got %v (%T)", kv.Value, kv.Value)
		}
		return int64(a), nil
	}
	return DefaultAlignment, nil
}

// Progress is told when each tensor has been written.
type Progress func(done, total int, name string)

// WriteFile writes f to path atomically (a temporary file renamed into
// place), so a failed export never leaves a half-written model behind.
func (f *File) WriteFile(path string, progress Progress) error {
	return f.WriteFileContext(context.Background(), path, progress)
}

// WriteFileContext is WriteFile that stops, removing its temporary file,
// at the first write after ctx is done.
func (f *File) WriteFileContext(ctx context.Context, path string, progress Progress) (err error) {
	tmp, err := atomicfile.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = f.Write(ctxWriter{ctx, tmp}, progress); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// ctxWriter fails every write once its context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Write streams f to w. Every tensor is checked (names unique, sizes whole
// blocks) and every metadata value's type before the first byte is written.
func (f *File) Write(w io.Writer, progress Progress) error {
	align, err := f.alignment()
	if err != nil {
		return err
	}
	seenKey := map[string]bool{}
	for _, kv := range f.KV {
		if kv.Key == "" {
			return fmt.Errorf("gguf: empty metadata key")
		}
		if seenKey[kv.Key] {
			return fmt.Errorf("gguf: metadata key %s given twice", kv.Key)
		}
		seenKey[kv.Key] = true
		if _, err := valueType(kv.Value); err != nil {
			return fmt.Errorf("gguf: metadata %s: %w", kv.Key, err)
		}
	}
	offsets := make([]int64, len(f.Tensors))
	sizes := make([]int64, len(f.Tensors))
	seenTensor := map[string]bool{}
	var offset int64
	for i, t := range f.Tensors {
		if t.Name == "" || seenTensor[t.Name] {
			return fmt.Errorf("gguf: tensor name %q empty or given twice", t.Name)
		}
		seenTensor[t.Name] = true
		size, err := t.Size()
		if err != nil {
			return err
		}
		offsets[i], sizes[i] = offset, size
		offset = alignUp(offset+size, align)
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countingWriter{w: bw}
	e := &encoder{w: cw}
	e.raw([]byte("GGUF"))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.KV)))
	for _, kv := range f.KV {
		e.str(kv.Key)
		e.value(kv.Value, true)
	}
	for i, t := range f.Tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(offsets[i]))
	}
	if e.err != nil {
		return e.err
	}
	e.pad(align)
	for i, t := range f.Tensors {
		if e.err != nil {
			return e.err
		}
		data, err := t.Data()
		if err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		if int64(len(data)) != sizes[i] {
			return fmt.Errorf("tensor %s: %s %v needs %d bytes, got %d", t.Name, t.Type, t.Dims, sizes[i], len(data))
		}
		e.raw(data)
		e.pad(align)
		if progress != nil && e.err == nil {
			progress(i+1, len(f.Tensors), t.Name)
		}
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian values and keeps the first error.
type encoder struct {
	w   *countingWriter
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}
func (e *encoder) u8(v uint8) { e.buf[0] = v; e.raw(e.buf[:1]) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }
func (e *encoder) pad(align int64) {
	if n := alignUp(e.w.n, align) - e.w.n; n > 0 {
		e.raw(make([]byte, n))
	}
}

// valueType returns the type tag of a metadata value.
func valueType(v any) (ValueType, error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, nil
	case int8:
		return TypeInt8, nil
	case uint16:
		return TypeUint16, nil
	case int16:
		return TypeInt16, nil
	case uint32:
		return TypeUint32, nil
	case int32:
		return TypeInt32, nil
	case float32:
		return TypeFloat32, nil
	case bool:
		return TypeBool, nil
	case string:
		return TypeString, nil
	case uint64:
		return TypeUint64, nil
	case int64:
		return TypeInt64, nil
	case float64:
		return TypeFloat64, nil
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64:
		return TypeArray, nil
	}
	return 0, fmt.Errorf("unsupported value type %T", v)
}

// value writes v, preceded by its type tag when tagged.
func (e *encoder) value(v any, tagged bool) {
	t, err := valueType(v)
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return
	}
	if tagged {
		e.u32(uint32(t))
	}
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []uint8:
		array(e, TypeUint8, x)
	case []int8:
		array(e, TypeInt8, x)
	case []uint16:
		array(e, TypeUint16, x)
	case []int16:
		array(e, TypeInt16, x)
	case []uint32:
		array(e, TypeUint32, x)
	case []int32:
		array(e, TypeInt32, x)
	case []float32:
		array(e, TypeFloat32, x)
	case []bool:
		array(e, TypeBool, x)
	case []string:
		array(e, TypeString, x)
	case []uint64:
		array(e, TypeUint64, x)
	case []int64:
		array(e, TypeInt64, x)
	case []float64:
		array(e, TypeFloat64, x)
	}
}

func array[T any](e *encoder, elem ValueType, xs []T) {
	e.u32(uint32(elem))
	e.u64(uint64(len(xs)))
	for _, x := range xs {
		e.value(x, false)
	}
}
