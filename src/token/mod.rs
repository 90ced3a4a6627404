//! Bearer tokens: finding them in a request, verifying them, caching verified ones.
