//===- Library.cpp - kernel symbols: dlopen'ed or linked in ---------------===//

#include "Library.h"
#include "Error.h"

#include <dlfcn.h>
#include <sys/stat.h>

using namespace attnrt;

Library::Library(const std::string &path) : path(path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    fail(ATTNRT_ERR_IO, "kernel library " + path +
                            " does not exist; the manifest's 'library' "
                            "must name a file in the artifact directory");
  // An attnc --linkage=object artifact: dlopen would only say "cannot
  // dynamically load" something; say what to do instead.
  if (path.size() > 2 && path.compare(path.size() - 2, 2, ".o") == 0)
    fail(ATTNRT_ERR_LIBRARY,
         "kernel library " + path +
             " is an object file (attnc --linkage=object): link it into the "
             "program and open it with attnrt_open_embedded, or compile with "
             "attnc --linkage=shared for attnrt_open");
  // RTLD_LOCAL keeps kernels of different artifacts from interposing.
  handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    fail(ATTNRT_ERR_LIBRARY, "cannot load kernel library " + path + ": " +
                                 (why ? why : "unknown error") +
                                 "; rebuild the artifact for this host");
  }
}

Library::Library(Lookup lookup, const std::string &name)
    : path(name), lookup(lookup) {}

Library::~Library() {
  if (handle)
    dlclose(handle);
}

void *Library::find(const std::string &name) const {
  if (lookup)
    return lookup(name.c_str());
  dlerror();
  return dlsym(handle, name.c_str());
}

void *Library::symbol(const std::string &name, const std::string &what) const {
  void *sym = find(name);
  if (!sym && lookup)
    fail(ATTNRT_ERR_LIBRARY,
         what + ": symbol '" + name + "' is missing from " + path +
             " (the lookup function returned NULL); pass the manifest and "
             "the symbol function of the same attnc artifact "
             "(attnc_<id>_manifest and attnc_<id>_symbol of its header) and "
             "link its object");
  if (!sym)
    fail(ATTNRT_ERR_LIBRARY, what + ": symbol '" + name + "' is missing from " +
                                 path +
                                 "; the library and manifest.json do not "
                                 "match, regenerate both with attnc");
  return sym;
}
