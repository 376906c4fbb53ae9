# Compiler settings shared by every Facet target: warnings, ccache, sanitizers.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

find_program(FACET_CCACHE ccache)
if(FACET_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # The precompiled header is only cacheable with these sloppiness settings; with the source tree as
  # base directory, paths are hashed relative to it, so clones and worktrees share cache entries.
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${PROJECT_SOURCE_DIR}" ${FACET_CCACHE})
endif()

# Our code compiles clean under these; third-party headers are included as SYSTEM.
set(FACET_WARNINGS -Wall -Wextra -Wno-unused-parameter)

option(FACET_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
if(FACET_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# facet_add_library(NAME SOURCES ... DEPS ...): one static library per top-level folder.
function(facet_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/generated)
  target_compile_options(${name} PRIVATE ${FACET_WARNINGS})
  foreach(dep IN LISTS ARG_DEPS)
    if(dep MATCHES "^facet_")
      # Facet libraries are always linked whole: their components register themselves in static
      # initialisers that no other code references (and CMake requires one link feature per item).
      target_link_libraries(${name} PUBLIC "$<LINK_LIBRARY:WHOLE_ARCHIVE,${dep}>")
    else()
      target_link_libraries(${name} PUBLIC ${dep})
    endif()
  endforeach()
endfunction()
