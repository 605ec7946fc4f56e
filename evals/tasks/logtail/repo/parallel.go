package logtail

import "sync"

// MapOrdered applies fn to every item on up to workers goroutines and returns the results
// in the order of items.
func MapOrdered(items []string, workers int, fn func(string) string) []string {
	if workers < 1 {
		workers = 1
	}
	results := make([]string, len(items))
	indexes := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range indexes {
				results[i] = fn(items[i])
			}
		}()
	}
	for i := range items {
		indexes <- i
	}
	close(indexes)
	wg.Wait()
	return results
}
