; Extra patterns for TSX, added to typescript-tags.scm: components used as JSX elements
; (capitalised: lower-case tags are HTML).
((jsx_opening_element name: (identifier) @name.reference.class) (#match? @name.reference.class "^[A-Z]"))
((jsx_self_closing_element name: (identifier) @name.reference.class) (#match? @name.reference.class "^[A-Z]"))
