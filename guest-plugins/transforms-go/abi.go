// The canonical ABI of the world `transform` (wit/transform.wit), written out by hand: Go
// (GOOS=wasip1, //go:wasmexport) builds a core module, which `cargo xtask plugins` turns into
// a component with the WIT metadata and the WASI preview1 reactor adapter.
//
// Memory that crosses the boundary is kept reachable from Go (`pinned`, `hostAllocs`) until the
// next call, so that Go's garbage collector, which never moves objects, does not free it while
// the host reads or writes it.
package main

import (
	"encoding/binary"
	"unsafe"
)

//go:wasmimport sluice:transform/log@0.1.0 log
func hostLog(level uint32, ptr uint32, length uint32)

const levelInfo = 2

func logInfo(msg string) {
	if msg == "" {
		return
	}
	hostLog(levelInfo, addr(unsafe.Pointer(unsafe.StringData(msg))), uint32(len(msg)))
}

// Buffers the host allocated through cabi_realloc for the current call's arguments.
var hostAllocs [][]uint64

// Buffers the previous call returned (outcome list, new values, reasons).
var pinned [][]byte

func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

func mem(ptr, length uint32) []byte {
	if length == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), length)
}

// alloc returns zeroed memory aligned to 8 bytes, kept alive until the next call.
func alloc(size int) []byte {
	words := make([]uint64, (size+7)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:size]
	pinned = append(pinned, b)
	return b
}

func pin(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	pinned = append(pinned, b)
	return addr(unsafe.Pointer(unsafe.SliceData(b)))
}

// The WASI preview1 adapter needs memory of its own (its state and a shadow stack) from the
// first WASI call on, which the Go runtime makes during its start-up, before Go code such as
// cabi_realloc can run; and memory it took with memory.grow would be handed out again by Go's
// heap, which assumes it owns the end of linear memory. So it gets this static region: the
// componentize step (host/componentize) finds it by the marker it starts with and appends
// `cabi_realloc_adapter`, a small bump allocator in plain WebAssembly, that allocates from it.
// The marker and the size are that step's ARENA_MARKER and ARENA_LEN.
var adapterArena = [256 << 10]byte{'s', 'l', 'u', 'i', 'c', 'e', '.', 'a', 'd', 'a', 'p', 't', 'e', 'r', '.', '1'}

// Exported so that the linker keeps the arena, which no Go code uses.
//
//go:wasmexport sluice_adapter_arena
func adapterArenaAddr() uint32 { return addr(unsafe.Pointer(&adapterArena[0])) }

// The allocator the host uses for the exports' arguments. It runs while the component may not
// call out (the host is lowering arguments), so it must not touch the Go heap: an allocation
// there can start a collection, which reads the clock through WASI, and wasmtime then traps
// with "cannot leave component instance". It bump-allocates from a static arena instead, which
// every export call empties on return; only what does not fit comes from the heap.
var argArena [8 << 20]byte
var argUsed uint32

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align
	}
	base := addr(unsafe.Pointer(&argArena[0]))
	start := (base + argUsed + align - 1) &^ (align - 1)
	var p uint32
	if end := start + newSize - base; end <= uint32(len(argArena)) {
		argUsed = end
		p = start
	} else {
		words := make([]uint64, (newSize+7)/8)
		hostAllocs = append(hostAllocs, words)
		p = addr(unsafe.Pointer(unsafe.SliceData(words)))
	}
	if oldPtr != 0 && oldSize != 0 {
		copy(mem(p, newSize), mem(oldPtr, min(oldSize, newSize)))
	}
	return p
}

// releaseArgs forgets the current call's arguments.
func releaseArgs() {
	argUsed = 0
	hostAllocs = hostAllocs[:0]
}

var le = binary.LittleEndian

// Where results that do not fit in one core value are returned.
var retArea [3]uint64

func retPtr() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&retArea[0])), 24)
}

func str(ptr, length uint32) string { return string(mem(ptr, length)) }

//go:wasmexport init
func exportInit(ptr, length uint32) uint32 {
	pinned = pinned[:0]
	pairs := make([][2]string, length)
	b := mem(ptr, length*16)
	for i := range pairs {
		e := b[i*16:]
		pairs[i] = [2]string{str(le.Uint32(e), le.Uint32(e[4:])), str(le.Uint32(e[8:]), le.Uint32(e[12:]))}
	}
	releaseArgs()
	ret := retPtr()
	clear(ret)
	if err := initTransform(pairs); err != nil {
		msg := []byte(err.Error())
		ret[0] = 1
		le.PutUint32(ret[4:], pin(msg))
		le.PutUint32(ret[8:], uint32(len(msg)))
	} else {
		ret[0] = 0
	}
	return addr(unsafe.Pointer(&retArea[0]))
}

// A record is 48 bytes (align 8): key option<list<u8>> at 0, value at 12, headers at 20,
// timestamp option<s64> at 32. An outcome is 56 bytes (align 8): the case at 0, its payload
// at 8.
const recordSize = 48
const outcomeSize = 56

const (
	caseKeep     = 0
	caseDrop     = 1
	caseSetValue = 2
	caseFail     = 5
)

//go:wasmexport process
func exportProcess(ptr, length uint32) uint32 {
	pinned = pinned[:0]
	records := mem(ptr, length*recordSize)
	out := alloc(int(length) * outcomeSize)
	for i := 0; i < int(length); i++ {
		r := records[i*recordSize:]
		value := mem(le.Uint32(r[12:]), le.Uint32(r[16:]))
		o := out[i*outcomeSize:]
		kind, payload := apply(value)
		o[0] = kind
		if kind == caseSetValue || kind == caseFail {
			le.PutUint32(o[8:], pin(payload))
			le.PutUint32(o[12:], uint32(len(payload)))
		}
	}
	releaseArgs()
	ret := retPtr()
	le.PutUint32(ret[0:], pin(out))
	le.PutUint32(ret[4:], length)
	return addr(unsafe.Pointer(&retArea[0]))
}

func main() {}
