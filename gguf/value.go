package gguf

import (
	"fmt"
	"math"
)

// ValueType is the type tag of a metadata value (gguf_metadata_value_type).
type ValueType uint32

// Metadata value types, numbered as in the spec.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value_type(%d)", uint32(t))
}

// size is the encoded size of a scalar of type t; strings and arrays are
// variable (0).
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

func (t ValueType) valid() bool { return t <= TypeFloat64 }

// Value is one metadata value. Scalars hold the Go type matching Type
// (uint8 … float64, bool, string). Arrays have Type TypeArray and Elem set
// to the element type, and hold a typed slice ([]uint8 … []float64, []bool,
// []string) or, for arrays of arrays, []Value.
type Value struct {
	Type ValueType
	Elem ValueType // element type of an array
	v    any
}

// Constructors for each value type.
func Uint8(x uint8) Value     { return Value{Type: TypeUint8, v: x} }
func Int8(x int8) Value       { return Value{Type: TypeInt8, v: x} }
func Uint16(x uint16) Value   { return Value{Type: TypeUint16, v: x} }
func Int16(x int16) Value     { return Value{Type: TypeInt16, v: x} }
func Uint32(x uint32) Value   { return Value{Type: TypeUint32, v: x} }
func Int32(x int32) Value     { return Value{Type: TypeInt32, v: x} }
func Float32(x float32) Value { return Value{Type: TypeFloat32, v: x} }
func Bool(x bool) Value       { return Value{Type: TypeBool, v: x} }
func String(x string) Value   { return Value{Type: TypeString, v: x} }
func Uint64(x uint64) Value   { return Value{Type: TypeUint64, v: x} }
func Int64(x int64) Value     { return Value{Type: TypeInt64, v: x} }
func Float64(x float64) Value { return Value{Type: TypeFloat64, v: x} }

// Array builds an array value from a typed slice ([]uint8 … []float64,
// []bool, []string) or, for an array of arrays, a []Value whose elements
// are all arrays.
func Array(slice any) (Value, error) {
	var elem ValueType
	switch s := slice.(type) {
	case []uint8:
		elem = TypeUint8
	case []int8:
		elem = TypeInt8
	case []uint16:
		elem = TypeUint16
	case []int16:
		elem = TypeInt16
	case []uint32:
		elem = TypeUint32
	case []int32:
		elem = TypeInt32
	case []float32:
		elem = TypeFloat32
	case []bool:
		elem = TypeBool
	case []string:
		elem = TypeString
	case []uint64:
		elem = TypeUint64
	case []int64:
		elem = TypeInt64
	case []float64:
		elem = TypeFloat64
	case []Value:
		elem = TypeArray
		for i, e := range s {
			if e.Type != TypeArray {
				return Value{}, fmt.Errorf("array of arrays: element %d is a %v", i, e.Type)
			}
		}
	default:
		return Value{}, fmt.Errorf("cannot make a GGUF array of %T", slice)
	}
	return Value{Type: TypeArray, Elem: elem, v: slice}, nil
}

// MustArray is Array for slices whose type is known to be valid.
func MustArray(slice any) Value {
	v, err := Array(slice)
	if err != nil {
		panic(err)
	}
	return v
}

// Any returns the Go value: a scalar, a typed slice or []Value.
func (v Value) Any() any { return v.v }

// Str returns the value of a string, ok false for other types.
func (v Value) Str() (string, bool) {
	s, ok := v.v.(string)
	return s, ok && v.Type == TypeString
}

// Uint returns an unsigned or non-negative signed integer of any width.
// Readers should accept any integer type for counts (the spec recommends
// uint64 but many writers use uint32).
func (v Value) Uint() (uint64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns a float32 or float64 value as float64.
func (v Value) Float() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Bool returns the value of a bool.
func (v Value) Bool() (bool, bool) {
	b, ok := v.v.(bool)
	return b, ok
}

// Len is the number of elements of an array (0 for scalars).
func (v Value) Len() int {
	switch s := v.v.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []bool:
		return len(s)
	case []string:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	case []Value:
		return len(s)
	}
	return 0
}

// equal reports whether two values are identical (NaNs compare by bits).
func (v Value) equal(w Value) bool {
	if v.Type != w.Type || v.Elem != w.Elem {
		return false
	}
	switch a := v.v.(type) {
	case float32:
		b, _ := w.v.(float32)
		return math.Float32bits(a) == math.Float32bits(b)
	case float64:
		b, _ := w.v.(float64)
		return math.Float64bits(a) == math.Float64bits(b)
	case []Value:
		b, _ := w.v.([]Value)
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if !a[i].equal(b[i]) {
				return false
			}
		}
		return true
	}
	return fmt.Sprintf("%#v", v.v) == fmt.Sprintf("%#v", w.v)
}
