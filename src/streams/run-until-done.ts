import type { Observable } from 'rxjs';

/**
 * Subscribes to the pipeline `start` makes and settles when it completes or
 * fails. Meanwhile `setInterrupt` holds a function that ends it at once with
 * an error; null again once it ended.
 */
export function runUntilDone(start: () => Observable<unknown>, setInterrupt: (interrupt: ((error: Error) => void) | null) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const subscription = start().subscribe({
      error: (error: unknown) => {
        setInterrupt(null);
        reject(error);
      },
      complete: () => {
        setInterrupt(null);
        resolve();
      },
    });
    setInterrupt((error) => {
      setInterrupt(null);
      subscription.unsubscribe();
      reject(error);
    });
  });
}
