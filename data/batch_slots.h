// Batch slots: the loader lets a sample's transforms write a field straight into that sample's row
// of the batch tensor, so collate finds the batch already stacked and copies nothing. (Stacking was
// the last copy between a face-loading worker's decoded pixels and the batch: ~8 % of its time.)
//
//   BatchSlots slots(batch_size, pinned);            // the loader, per batch
//   { BatchSlots::Row row(slots, i); transforms... } // per sample
//   torch::Tensor out = BatchSlots::output("image", sizes, torch::kFloat);  // a transform (normalize)
//   collate(samples, indices, padding, &slots);      // takes the slot tensors whose rows line up
#pragma once

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>

namespace facet::data {

class BatchSlots {
 public:
  // `rows`: the batch's planned size; `pinned`: page-locked tensors (for non-blocking GPU copies).
  BatchSlots(int64_t rows, bool pinned) : rows_(rows), pinned_(pinned) {}
  BatchSlots(const BatchSlots&) = delete;
  BatchSlots& operator=(const BatchSlots&) = delete;

  // While a Row lives on a thread, `output` hands out row `row` of this batch's tensors.
  class Row {
   public:
    Row(BatchSlots& slots, int64_t row);
    ~Row();
    Row(const Row&) = delete;
    Row& operator=(const Row&) = delete;

   private:
    friend class BatchSlots;
    BatchSlots& slots_;
    int64_t row_;
    std::set<std::string> given_;  // a field's slot is handed out once per sample
    Row* previous_;
  };

  // A tensor of `sizes` and `dtype` for field `name` of the current sample, for a transform to write
  // the field's final values into: its row of the batch's tensor for `name` (made by the first
  // request, with these sizes) when a Row is open, the sizes and dtype agree and the row was not
  // already handed out for this sample; else a new contiguous tensor. Either way contiguous.
  static torch::Tensor output(const std::string& name, at::IntArrayRef sizes, at::ScalarType dtype);

  // Whether `t` is what output() handed out for field `name` of the current sample: memory that the
  // loader owns and nothing else refers to, which a later transform may change in place.
  static bool holds(const std::string& name, const torch::Tensor& t);

  // The batch's tensor for `name`, its first parts.size() rows, when every parts[i] is row i of it
  // (each sample's field is still what the transform wrote); else an undefined tensor.
  torch::Tensor stacked(const std::string& name, const std::vector<torch::Tensor>& parts) const;

 private:
  int64_t rows_;
  bool pinned_;
  std::map<std::string, torch::Tensor> tensors_;
};

}  // namespace facet::data
