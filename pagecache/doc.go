// Package pagecache stores prerendered pages for anonymous visitors.
package pagecache
