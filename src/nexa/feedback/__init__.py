"""Finding weak capabilities in eval reports and producing the next dataset version aimed at them."""
