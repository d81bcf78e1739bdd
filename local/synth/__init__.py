"""The embedded synthetic corpus: a task grammar spoken by espeak-ng and flite voices."""
