package jobfleet

import (
	"errors"
	"fmt"
)

// Kinds of invalid job message. Every error returned by [Decode] and
// [Job.Validate] is a [*MessageError] that matches exactly one of these with
// [errors.Is].
var (
	// ErrMalformed: the message is not a single JSON object, or an object
	// in it names a member twice.
	ErrMalformed = errors.New("malformed JSON")
	// ErrTooLarge: the message is larger than MaxMessageBytes.
	ErrTooLarge = errors.New("message too large")
	// ErrUnsupportedVersion: the version is not one this package reads.
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrMissingField: a required field is absent or empty.
	ErrMissingField = errors.New("missing field")
	// ErrUnknownField: the message has a field the contract does not define.
	ErrUnknownField = errors.New("unknown field")
	// ErrReservedField: the message sets a field only jobfleet may set
	// (see ReservedFields).
	ErrReservedField = errors.New("reserved field")
	// ErrWrongType: a field holds a JSON value of the wrong type.
	ErrWrongType = errors.New("wrong type")
	// ErrInvalidFeature: a feature value is NaN, infinite or negative, or a
	// feature name is empty.
	ErrInvalidFeature = errors.New("invalid feature")
	// ErrInvalidValue: a field has the right type but a value outside what
	// the contract allows, such as an id with a slash.
	ErrInvalidValue = errors.New("invalid value")
)

// MessageError describes why a job message was rejected.
type MessageError struct {
	// Field is the JSON path of the offending field ("features.rows",
	// "history[0].reason"), empty when the message as a whole is at fault.
	Field string
	// Kind is one of the Err* sentinels of this package.
	Kind error
	// Detail says what was wrong, for people.
	Detail string
}

func (e *MessageError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid job message: %v: %s", e.Kind, e.Detail)
	}
	return fmt.Sprintf("invalid job message: %s: %v: %s", e.Field, e.Kind, e.Detail)
}

// Unwrap returns the error's kind, so errors.Is(err, ErrUnknownField) works.
func (e *MessageError) Unwrap() error { return e.Kind }

func messageError(field string, kind error, format string, args ...any) *MessageError {
	return &MessageError{Field: field, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
