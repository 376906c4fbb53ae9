// UTF-8 well-formedness, for text read from files (configs): apart from core/text.h, which every
// registered component includes.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace facet {

// The offset of the first byte of `text` that is not part of well-formed UTF-8 (overlong forms,
// surrogates and code points past U+10FFFF are ill-formed), or nullopt when it all is.
std::optional<size_t> first_invalid_utf8(std::string_view text);

}  // namespace facet
