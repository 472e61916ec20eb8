// Package sessioncheck tells anonymous visitors from identified ones by
// reading the session the application itself wrote.
package sessioncheck
